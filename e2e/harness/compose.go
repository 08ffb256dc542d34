package harness

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// LoadCompose loads the repository's docker-compose.yml with compose-go, as
// docker compose would (project name "registry-auth", no environment
// variables set, so every ${VAR:-default} takes its default).
func LoadCompose(ctx context.Context, repoRoot string) (*types.Project, error) {
	return LoadComposeFile(ctx, repoRoot, "docker-compose.yml")
}

// LoadComposeFile loads the compose-format file rel (relative to repoRoot; a
// stack file too) as LoadCompose does, its relative paths resolved against its
// own directory, as docker stack deploy resolves them.
func LoadComposeFile(ctx context.Context, repoRoot, rel string) (*types.Project, error) {
	file := filepath.Join(repoRoot, rel)
	details, err := loader.LoadConfigFiles(ctx, []string{file}, filepath.Dir(file))
	if err != nil {
		return nil, err
	}
	project, err := loader.LoadWithContext(ctx, *details, func(o *loader.Options) {
		o.SetProjectName("registry-auth", true)
	})
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", file, err)
	}
	return project, nil
}

// composeService returns the service called name.
func composeService(project *types.Project, name string) (types.ServiceConfig, error) {
	svc, ok := project.Services[name]
	if !ok {
		return svc, fmt.Errorf("docker-compose.yml has no service %q", name)
	}
	return svc, nil
}

// mountMap translates paths inside a container to paths on this machine,
// following the container's bind mounts.
type mountMap map[string]string // container path -> host path

// newMountMap maps each bind mount of svc to its host source, except that a
// source named in replace (as a path relative to repoRoot, e.g. "certs") maps
// to the replacement directory instead: the test's own files.
func newMountMap(svc types.ServiceConfig, repoRoot string, replace map[string]string) mountMap {
	m := mountMap{}
	for _, v := range svc.Volumes {
		if v.Type != types.VolumeTypeBind {
			continue
		}
		host := v.Source
		if rel, err := filepath.Rel(repoRoot, v.Source); err == nil {
			if r, ok := replace[filepath.ToSlash(rel)]; ok {
				host = r
			}
		}
		m[filepath.Clean(v.Target)] = host
	}
	return m
}

// translate returns the host path for a container path under one of the
// mounts (the longest matching mount wins), and whether one matched.
func (m mountMap) translate(path string) (string, bool) {
	best := ""
	for target := range m {
		if (path == target || strings.HasPrefix(path, target+"/")) && len(target) > len(best) {
			best = target
		}
	}
	if best == "" {
		return path, false
	}
	return m[best] + strings.TrimPrefix(path, best), true
}

// rewrite walks a decoded YAML tree and replaces, in place, every string
// value that is a path under one of the mounts.
func (m mountMap) rewrite(tree any) {
	walkStrings(tree, func(s string) string {
		if out, ok := m.translate(s); ok {
			return out
		}
		return s
	})
}

// walkStrings replaces every string value (not key) of a tree of
// map[string]any and []any with f(value).
func walkStrings(tree any, f func(string) string) {
	switch t := tree.(type) {
	case map[string]any:
		for k, v := range t {
			if s, ok := v.(string); ok {
				t[k] = f(s)
			} else {
				walkStrings(v, f)
			}
		}
	case []any:
		for i, v := range t {
			if s, ok := v.(string); ok {
				t[i] = f(s)
			} else {
				walkStrings(v, f)
			}
		}
	}
}

// serviceEnv returns the environment of the compose service as KEY=VALUE
// lines, with values that are container paths under its mounts translated.
func serviceEnv(svc types.ServiceConfig, mounts mountMap) []string {
	var env []string
	for k, v := range svc.Environment {
		if v == nil {
			continue
		}
		val, _ := mounts.translate(*v)
		env = append(env, k+"="+val)
	}
	return env
}
