package cli

import (
	"io"
	"strings"
	"testing"
	"time"
)

// TestFlagSetReadsVariables: a variable sets a flag's default, a flag on the command line
// wins, a malformed variable is an error naming it, and Given tells set from default.
func TestFlagSetReadsVariables(t *testing.T) {
	t.Parallel()
	vars := map[string]string{"REGISTRY_AUTH_NAME": "from-env", "REGISTRY_AUTH_WAIT": "2s", "REGISTRY_AUTH_ON": "true", "REGISTRY_AUTH_N": "7"}
	env := Env{LookupEnv: func(k string) (string, bool) { v, ok := vars[k]; return v, ok }, Stdout: io.Discard, Stderr: io.Discard}
	fs := NewFlagSet("test", "Usage: test\n", env)
	var name, other string
	var wait time.Duration
	var on bool
	var n int
	fs.EnvString(&name, "name", "default", "a name")
	fs.EnvString(&other, "other", "default", "another")
	fs.EnvDuration(&wait, "wait", time.Second, "a wait")
	fs.EnvBool(&on, "on", false, "a switch")
	fs.EnvInt(&n, "n", 1, "a count")
	if err := fs.Parse([]string{"--n", "9"}); err != nil {
		t.Fatal(err)
	}
	if name != "from-env" || other != "default" || wait != 2*time.Second || !on || n != 9 {
		t.Errorf("got %q %q %v %v %d, want from-env default 2s true 9", name, other, wait, on, n)
	}
	if !fs.Given("name") || fs.Given("other") || !fs.Given("n") {
		t.Errorf("Given: got name %v other %v n %v, want true false true", fs.Given("name"), fs.Given("other"), fs.Given("n"))
	}

	vars["REGISTRY_AUTH_WAIT"], vars["REGISTRY_AUTH_N"] = "soon", "12abc"
	fs = NewFlagSet("test", "Usage: test\n", env)
	fs.EnvDuration(&wait, "wait", time.Second, "a wait")
	fs.EnvInt(&n, "n", 1, "a count")
	err := fs.Parse(nil)
	if err == nil || !strings.Contains(err.Error(), `REGISTRY_AUTH_WAIT="soon"`) || !strings.Contains(err.Error(), `REGISTRY_AUTH_N="12abc"`) {
		t.Errorf("got %v, want both malformed variables named", err)
	}
}

// TestCostChecked: --cost outside bcrypt's range is refused by Parse, with the range.
func TestCostChecked(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		arg string
		ok  bool
	}{{"4", true}, {"31", true}, {"3", false}, {"32", false}} {
		fs := NewFlagSet("test", "Usage: test\n", Env{LookupEnv: func(string) (string, bool) { return "", false }, Stdout: io.Discard, Stderr: io.Discard})
		var cost int
		fs.Cost(&cost)
		err := fs.Parse([]string{"--cost", tt.arg})
		if (err == nil) != tt.ok || (err != nil && !strings.Contains(err.Error(), "want 4 to 31")) {
			t.Errorf("--cost %s: got %v, want ok %v", tt.arg, err, tt.ok)
		}
	}
}
