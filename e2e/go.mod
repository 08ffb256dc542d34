module github.com/registry-auth/registry-auth/e2e

go 1.26.8
