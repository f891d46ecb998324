package run

import (
	"net/url"
	"os"
	"strings"

	"github.com/loadcap/loadcap/loadgen"
)

// redactSecrets removes any password or token of the targets, and of
// INFLUX_TOKEN and PGPASSWORD, from a message before it is stored or shown.
func redactSecrets(msg string, ts []loadgen.TargetSpec) string {
	var secrets []string
	for _, t := range ts {
		if t.URL == nil {
			continue
		}
		if pw, ok := t.URL.User.Password(); ok && pw != "" {
			secrets = append(secrets, pw, url.QueryEscape(pw))
		}
		for _, k := range []string{"p", "password", "token"} {
			if v := t.URL.Query().Get(k); v != "" {
				secrets = append(secrets, v)
			}
		}
	}
	for _, k := range []string{"INFLUX_TOKEN", "PGPASSWORD"} {
		if v := os.Getenv(k); v != "" {
			secrets = append(secrets, v)
		}
	}
	for _, s := range secrets {
		if len(s) >= 3 {
			msg = strings.ReplaceAll(msg, s, "xxxxx")
		}
	}
	return msg
}
