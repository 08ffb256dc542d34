module github.com/registry-auth/registry-auth

go 1.26.8
