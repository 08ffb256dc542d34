package e2e

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// TestGoContainerRegistry drives the stack with go-containerregistry, the
// library behind crane, through Traefik: steps 1 to 5 and 7 of issue 4
// (step 6, the 1 GiB layer, is TestLargeLayer).
func TestGoContainerRegistry(t *testing.T) {
	s := startStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	img := randomOCIImage(t, 3, 256<<10)
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	pushed := imageRef(t, s.Addr, "e2e/ggcr:v1")

	t.Run("1 push by the push group", func(t *testing.T) {
		if err := remote.Write(pushed, img, ggcrOptions(ctx, s, &pusher)...); err != nil {
			t.Fatalf("push as %s: %v", pusher.name, err)
		}
	})

	t.Run("2 pull by a read-only user", func(t *testing.T) {
		got, err := remote.Image(pushed, ggcrOptions(ctx, s, &reader)...)
		if err != nil {
			t.Fatalf("pull as %s: %v", reader.name, err)
		}
		verifyImage(t, got, img, want)
	})

	t.Run("3 push by a read-only user is denied", func(t *testing.T) {
		err := remote.Write(imageRef(t, s.Addr, "e2e/ggcr:by-reader"), randomOCIImage(t, 2, 1<<10), ggcrOptions(ctx, s, &reader)...)
		wantRegistryError(t, err, http.StatusForbidden, transport.DeniedErrorCode)
	})

	t.Run("4 no credentials and wrong password are unauthorized", func(t *testing.T) {
		wrong := account{pusher.name, "not-" + pusher.password}
		for _, a := range []*account{nil, &wrong} {
			_, err := remote.Image(pushed, ggcrOptions(ctx, s, a)...)
			wantRegistryError(t, err, http.StatusUnauthorized, transport.UnauthorizedErrorCode)
			err = remote.Write(imageRef(t, s.Addr, "e2e/ggcr:anon"), randomOCIImage(t, 1, 1<<10), ggcrOptions(ctx, s, a)...)
			wantRegistryError(t, err, http.StatusUnauthorized, transport.UnauthorizedErrorCode)
		}
	})

	t.Run("5 client-sent X-Forwarded-Method GET does not let a push through", func(t *testing.T) {
		spoof := startSpoofingProxy(t, s)
		target := imageRef(t, spoof.Addr, "e2e/ggcr:spoofed")
		registryUnchanged(t, s, func() {
			err := remote.Write(target, randomOCIImage(t, 2, 1<<10), ggcrOptions(ctx, s, &reader)...)
			wantRegistryError(t, err, http.StatusForbidden, transport.DeniedErrorCode)
		})
		if spoof.Requests() == 0 {
			t.Fatal("the spoofing proxy saw no request")
		}
		if _, err := remote.Head(imageRef(t, s.Addr, "e2e/ggcr:spoofed"), ggcrOptions(ctx, s, &pusher)...); err == nil {
			t.Fatal("the tag pushed with a spoofed method exists")
		}
	})

	t.Run("7 auth service stopped", func(t *testing.T) {
		if err := s.StopAuth(); err != nil {
			t.Fatal(err)
		}
		// Fewer retries than crane's default, which would wait 4 s for nothing.
		fast := remote.WithRetryBackoff(remote.Backoff{Duration: 10 * time.Millisecond, Factor: 1, Steps: 2})
		registryUnreached(t, s, func() {
			if _, err := remote.Image(pushed, ggcrOptions(ctx, s, &reader, fast)...); err == nil {
				t.Error("pull with the auth service stopped: got no error")
			} else {
				t.Logf("pull with the auth service stopped: %v", err)
			}
			err := remote.Write(imageRef(t, s.Addr, "e2e/ggcr:auth-down"), randomOCIImage(t, 1, 1<<10), ggcrOptions(ctx, s, &pusher, fast)...)
			if err == nil {
				t.Error("push with the auth service stopped: got no error")
			}
		})
		if err := s.StartAuth(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := remote.Image(pushed, ggcrOptions(ctx, s, &reader)...); err != nil {
			t.Fatalf("pull after the auth service came back: %v", err)
		}
	})
}

// verifyImage checks that got has the digest want and the same layers,
// byte for byte, as img.
func verifyImage(t testing.TB, got, img v1.Image, want v1.Hash) {
	t.Helper()
	d, err := got.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if d != want {
		t.Fatalf("pulled manifest digest %s, want %s", d, want)
	}
	gotLayers, err := got.Layers()
	if err != nil {
		t.Fatal(err)
	}
	wantLayers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(gotLayers) != len(wantLayers) {
		t.Fatalf("pulled %d layers, want %d", len(gotLayers), len(wantLayers))
	}
	for i, l := range gotLayers {
		wantDigest, _ := wantLayers[i].Digest()
		if d := digestOf(t, l); d != wantDigest {
			t.Fatalf("layer %d: content hashes to %s, want %s", i, d, wantDigest)
		}
	}
}

// digestOf reads a pulled layer's compressed content and returns its
// sha256, computed here rather than taken from the manifest.
func digestOf(t testing.TB, l v1.Layer) v1.Hash {
	t.Helper()
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	h, _, err := v1.SHA256(rc)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, rc)
	return h
}
