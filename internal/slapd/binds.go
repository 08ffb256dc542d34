package slapd

import (
	"bufio"
	"io"
	"regexp"
)

// bindLine matches the line slapd's stats logging (StatsLog) writes when a BIND request
// arrives, e.g. `conn=1000 op=0 BIND dn="cn=reader,dc=example,dc=com" method=128`. A
// successful bind writes a second line (`BIND dn="..." mech=SIMPLE ...`), which has no
// method= and is not counted, so a failed bind counts as much as a good one.
var bindLine = regexp.MustCompile(` BIND dn="([^"]*)" method=`)

// BindCounts is the number of BIND operations per bind DN as slapd logged it ("" for an
// anonymous bind, which includes Wait's ldapwhoami).
type BindCounts map[string]int

// Total is the number of BIND operations of every DN.
func (c BindCounts) Total() int {
	n := 0
	for _, v := range c {
		n += v
	}
	return n
}

// CountBinds reads a log of slapd run with StatsLog (its standard error, such as the log
// file harness.Processes writes) and counts the BIND operations in it.
func CountBinds(r io.Reader) (BindCounts, error) {
	counts := BindCounts{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if m := bindLine.FindSubmatch(sc.Bytes()); m != nil {
			counts[string(m[1])]++
		}
	}
	return counts, sc.Err()
}
