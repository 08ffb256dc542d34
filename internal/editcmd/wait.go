package editcmd

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
)

// The names /readyz gives the files the commands edit (the service's roles of its sources).
const (
	readyHTPasswd = "htpasswd"
	readyGroups   = "groups"
	readyTokens   = "tokens"
)

// loadWait is what --wait needs: the running service's base URL, how long to wait, and the
// files whose new content it must have loaded.
type loadWait struct {
	baseURL string        // e.g. http://127.0.0.1:8080; "" means do not wait
	timeout time.Duration // --wait-timeout
	// The files, by the role /readyz names them with (htpasswd, groups). wrote holds the
	// bytes this command wrote to each file it changed; a file it did not change counts with
	// its content on disk.
	paths map[string]string
	wrote map[string][]byte
	// clientCA is the PEM file of REGISTRY_AUTH_TLS_CLIENT_CA, "" when unset. An https://
	// base URL is verified against the system's CAs and this one: in the compose stack the
	// one CA of the TLS hop signed the service's certificate too, and the one-off container
	// of the auth service has its variables and files.
	clientCA string
}

// client is the HTTP client that asks /readyz.
func (w loadWait) client() (*http.Client, error) {
	if !strings.HasPrefix(w.baseURL, "https://") || w.clientCA == "" {
		return http.DefaultClient, nil
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	data, err := os.ReadFile(w.clientCA)
	if err != nil || !roots.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("--wait %s: cannot use REGISTRY_AUTH_TLS_CLIENT_CA=%s to verify the service's certificate (%v): unset it to verify against the system's CAs only", w.baseURL, w.clientCA, err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr}, nil
}

// waitURL checks --wait: a base URL, to which /readyz is added. It accepts the URL of
// /readyz or /healthz itself too.
func waitURL(raw string) (string, error) {
	if raw == "" {
		return "", nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("--wait %q: want the service's base URL, such as http://127.0.0.1:8080", raw)
	}
	u.Path = strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(u.Path, "/readyz"), "/healthz"), "/")
	return u.String(), nil
}

// parseReady reads a /readyz body, a line "ready" and then "ROLE sha256=HEX" for each file
// loaded (htpasswd, groups, policy), into the sums by role.
func parseReady(body io.Reader) map[string]string {
	sums := map[string]string{}
	sc := bufio.NewScanner(body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		if sum, ok := strings.CutPrefix(f[1], "sha256="); ok {
			sums[f[0]] = sum
		}
	}
	return sums
}

func sha256Hex(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// contents are the contents that count as loaded for role: what this command wrote, and what
// the file holds now (another command may have edited it since, starting from this one's
// content: that counts too).
func (w loadWait) contents(role string) [][]byte {
	var c [][]byte
	if b, ok := w.wrote[role]; ok {
		c = append(c, b)
	}
	if b, err := os.ReadFile(w.paths[role]); err == nil {
		c = append(c, b)
	}
	return c
}

// loaded reports whether sums (from /readyz) show the content of every role in roles, and if
// not, why not.
func (w loadWait) loaded(sums map[string]string, roles []string) (bool, string) {
	for _, role := range roles {
		sum, ok := sums[role]
		if !ok {
			return false, fmt.Sprintf("its /readyz names no %s file: is it started with that file (--%s)?", role, role)
		}
		if !slices.ContainsFunc(w.contents(role), func(b []byte) bool { return sha256Hex(b) == sum }) {
			return false, fmt.Sprintf("it reports %s sha256=%s, another content than this command wrote", role, sum)
		}
	}
	return true, ""
}

// wait polls the service's /readyz until it has loaded the content of roles, and returns how
// long that took.
func (w loadWait) wait(ctx context.Context, roles []string) (time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	client, err := w.client()
	if err != nil {
		return 0, err
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	why := "no answer yet"
	for {
		if ok, reason := w.ask(ctx, client, roles); ok {
			return time.Since(start), nil
		} else if reason != "" {
			why = reason
		}
		select {
		case <-ctx.Done():
			return time.Since(start), fmt.Errorf("--wait: the service at %s did not load the new %s within %v (%s); see its log for a failed reload (docker compose logs auth), check that it reads these files, or raise --wait-timeout",
				w.baseURL, strings.Join(roles, " and "), w.timeout, why)
		case <-tick.C:
		}
	}
}

// ask asks /readyz once.
func (w loadWait) ask(ctx context.Context, client *http.Client, roles []string) (bool, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.baseURL+"/readyz", nil)
	if err != nil {
		return false, err.Error()
	}
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return false, "" // the deadline, not the service: keep the reason of the last answer
		}
		return false, err.Error()
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusBadRequest && strings.HasPrefix(w.baseURL, "http://") {
		// What Go's TLS listener answers to plain HTTP.
		if b, _ := io.ReadAll(io.LimitReader(resp.Body, 512)); strings.Contains(string(b), "HTTP request to an HTTPS server") {
			return false, "the service speaks HTTPS: give --wait https://" + strings.TrimPrefix(w.baseURL, "http://")
		}
	}
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Sprintf("/readyz answered %s", resp.Status)
	}
	return w.loaded(parseReady(io.LimitReader(resp.Body, 64<<10)), roles)
}
