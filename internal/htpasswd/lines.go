package htpasswd

import (
	"bytes"
	"math"
	"strings"
)

// textLine is one logical line of an htpasswd or groups file as Apache reads it: one
// physical line, or several joined by a backslash before the line end (see readLines).
type textLine struct {
	num  int    // its first physical line, 1-based, as the parsers number problems
	raw  string // its physical lines as they are in the file, line ends included
	text string // what Apache reads: continuations joined, white space trimmed; "" for a blank or comment line
	eol  string // the line end of its last physical line: "\n", "\r\n", or "" at the end of the file
}

// physical is how many physical lines l spans.
func (l textLine) physical() int {
	n := strings.Count(l.raw, "\n")
	if l.eol == "" {
		n++ // an unterminated last line
	}
	return n
}

// body is the line without its line end, in a form whose trimmed content is l.text: a
// physical line as it is (its own white space kept), or, where a backslash continues it, l.text.
// An edit changes body and adds eol back, so a continued line becomes one physical line.
func (l textLine) body() string {
	single := strings.TrimSuffix(l.raw, l.eol)
	if l.text != "" && strings.Trim(single, confSpace) != l.text {
		return l.text
	}
	return single
}

// splitTextLines cuts data into logical lines with readLines' continuation rule; joining their
// raw gives data back. Each line's text is what readLines hands the parser for it.
func splitTextLines(data []byte) []textLine {
	var lines []textLine
	num := 1
	for len(data) > 0 {
		l := textLine{num: num}
		end := 0
		var logical []byte // the line as readLines joins it, so far
		for {
			i := bytes.IndexByte(data[end:], '\n')
			if i < 0 {
				end = len(data)
				break
			}
			logical = append(logical, data[end:end+i]...)
			end += i + 1
			num++
			b := bytes.TrimSuffix(logical, []byte("\r"))
			if len(b) == 0 || b[len(b)-1] != '\\' {
				break
			}
			logical = b[:len(b)-1]
		}
		l.raw = string(data[:end])
		switch {
		case strings.HasSuffix(l.raw, "\r\n"):
			l.eol = "\r\n"
		case strings.HasSuffix(l.raw, "\n"):
			l.eol = "\n"
		}
		// readLines itself, on this line alone, says what Apache reads of it.
		var ignored Problems
		readLines(strings.NewReader(l.raw), math.MaxInt32, &ignored, func(_ int, text string) { l.text = text })
		lines = append(lines, l)
		if l.eol == "" {
			num++ // an unterminated last line still counts
		}
		data = data[end:]
	}
	return lines
}

// joinTextLines is the file made of lines.
func joinTextLines(lines []textLine) []byte {
	var b bytes.Buffer
	for _, l := range lines {
		b.WriteString(l.raw)
	}
	return b.Bytes()
}

// lineEnd is the line end a new line gets: the one of the file's last terminated line, so a
// CRLF file stays CRLF; LF for a file without any.
func lineEnd(lines []textLine) string {
	for i := len(lines) - 1; i >= 0; i-- {
		if lines[i].eol != "" {
			return lines[i].eol
		}
	}
	return "\n"
}

// appendLine adds a line with content body at the end of lines, first ending an unterminated
// last line.
func appendLine(lines []textLine, body string) []textLine {
	eol := lineEnd(lines)
	if n := len(lines); n > 0 && lines[n-1].eol == "" {
		lines[n-1].raw += eol
		lines[n-1].eol = eol
	}
	next := 1
	if n := len(lines); n > 0 {
		next = lines[n-1].num + lines[n-1].physical()
	}
	return append(lines, textLine{num: next, raw: body + eol, text: strings.Trim(body, confSpace), eol: eol})
}

// withBody is l with its content replaced by body and its line end kept.
func (l textLine) withBody(body string) textLine {
	l.raw = body + l.eol
	l.text = strings.Trim(body, confSpace)
	return l
}

// lineIndex is the index in lines of the line numbered num, or -1.
func lineIndex(lines []textLine, num int) int {
	for i, l := range lines {
		if l.num == num {
			return i
		}
	}
	return -1
}

// problemsOnLines are the parser's problems on the lines at idx.
func problemsOnLines(problems Problems, lines []textLine, idx ...int) []Problem {
	var ps []Problem
	for _, p := range problems {
		for _, i := range idx {
			if p.Line == lines[i].num {
				ps = append(ps, p)
			}
		}
	}
	return ps
}

// errorsOffLines are the error-level problems that are not on the lines at fixed: what an edit
// leaves broken.
func errorsOffLines(problems Problems, lines []textLine, fixed ...int) []Problem {
	var ps []Problem
	for _, p := range problems {
		if p.Severity == Error && len(problemsOnLines(Problems{p}, lines, fixed...)) == 0 {
			ps = append(ps, p)
		}
	}
	return ps
}

func countErrors(problems Problems) int {
	n := 0
	for _, p := range problems {
		if p.Severity == Error {
			n++
		}
	}
	return n
}
