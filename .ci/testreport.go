//go:build ignore

// testreport reads `go test -json` output and prints what a person needs
// from a CI log: one line per package, the output of each failed test, the
// names of skipped tests and a closing count line. It exits 1 if any test
// failed or was skipped, a package failed outside its tests (build error,
// panic, timeout), or no test ran at all.
//
//	go test -json ./... > test.json; go run .ci/testreport.go < test.json
//
// It lives under .ci (ignored by ./... patterns) and builds with the
// standard library only, so it runs on a fresh machine before anything else
// is cached.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json), including the build
// events Go 1.24+ emits.
type event struct {
	Action      string
	Package     string
	Test        string
	Elapsed     float64
	Output      string
	ImportPath  string
	FailedBuild string
}

// maxLines bounds the output kept per test, so a chatty test cannot flood
// the log; the tail is what explains a failure.
const maxLines = 300

type pkgResult struct {
	action  string
	elapsed float64
	build   bool // the test binary did not build
	passed  int
	failed  int
	skipped int
}

func main() {
	var (
		output   = map[string][]string{} // package+"\x00"+test -> output lines
		build    = map[string][]string{} // import path -> build output
		pkgs     = map[string]*pkgResult{}
		order    []string
		failed   []string // package+"\x00"+test, in order of failure
		skipped  []string
		stray    []string // lines that are not JSON
		passN    int
		failN    int
		skipN    int
		badBuild = map[string]bool{}
	)
	pkg := func(name string) *pkgResult {
		p, ok := pkgs[name]
		if !ok {
			p = &pkgResult{}
			pkgs[name] = p
			order = append(order, name)
		}
		return p
	}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			stray = append(stray, string(line))
			continue
		}
		switch e.Action {
		case "build-output":
			build[e.ImportPath] = append(build[e.ImportPath], strings.TrimRight(e.Output, "\n"))
			continue
		case "build-fail":
			badBuild[e.ImportPath] = true
			continue
		}
		if e.Package == "" {
			continue
		}
		key := e.Package + "\x00" + e.Test
		p := pkg(e.Package)
		switch e.Action {
		case "output":
			lines := append(output[key], strings.TrimRight(e.Output, "\n"))
			if len(lines) > maxLines {
				lines = lines[len(lines)-maxLines:]
			}
			output[key] = lines
		case "pass", "fail", "skip":
			if e.Test == "" {
				p.action, p.elapsed = e.Action, e.Elapsed
				if e.FailedBuild != "" {
					badBuild[e.FailedBuild] = true
					p.build = true
				}
				continue
			}
			switch e.Action {
			case "pass":
				p.passed++
				passN++
				delete(output, key)
			case "fail":
				p.failed++
				failN++
				failed = append(failed, key)
			case "skip":
				p.skipped++
				skipN++
				skipped = append(skipped, key)
			}
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "testreport: reading input:", err)
		os.Exit(1)
	}

	slices.Sort(order)
	pkgFailed := 0
	for _, name := range order {
		p := pkgs[name]
		switch {
		case p.action == "skip" && p.passed+p.failed+p.skipped == 0:
			continue // no test files
		case p.action == "pass" && p.skipped == 0:
			fmt.Printf("ok  \t%s\t%.2fs\t%d passed\n", name, p.elapsed, p.passed)
		case p.action == "pass":
			fmt.Printf("SKIP\t%s\t%.2fs\t%d passed, %d skipped\n", name, p.elapsed, p.passed, p.skipped)
		default:
			pkgFailed++
			fmt.Printf("FAIL\t%s\t%.2fs\t%d passed, %d failed, %d skipped\n", name, p.elapsed, p.passed, p.failed, p.skipped)
		}
	}

	for _, ip := range slices.Sorted(maps.Keys(badBuild)) {
		fmt.Printf("\n=== build failed: %s\n%s\n", ip, strings.Join(build[ip], "\n"))
	}
	for _, key := range failed {
		name, test, _ := strings.Cut(key, "\x00")
		fmt.Printf("\n=== FAIL %s %s\n", name, test)
		for _, l := range output[key] {
			if !framing(l) {
				fmt.Println(l)
			}
		}
	}
	// A package that failed with no failed test: panic in TestMain, init,
	// timeout, or a test binary that exited early.
	for _, name := range order {
		if p := pkgs[name]; p.action == "fail" && p.failed == 0 && !p.build {
			fmt.Printf("\n=== FAIL %s (outside any test)\n%s\n", name, strings.Join(output[name+"\x00"], "\n"))
		}
	}
	// Watermill's universal pub/sub suite skips the tests of features our
	// bus does not claim (hub/bus sets Features honestly: no ordering
	// guarantee, no reconnect command). Those skips come from inside the
	// suite's own file, not from a missing service: list them, allow them.
	var featureSkips, realSkips []string
	for _, key := range skipped {
		feature := false
		for _, l := range output[key] {
			if strings.Contains(l, "test_pubsub.go:") {
				feature = true
			}
		}
		if feature {
			featureSkips = append(featureSkips, key)
		} else {
			realSkips = append(realSkips, key)
		}
	}
	if len(featureSkips) > 0 {
		fmt.Printf("\n=== universal pub/sub suite: %d tests of features the bus does not claim (allowed)\n", len(featureSkips))
		for _, key := range featureSkips {
			name, test, _ := strings.Cut(key, "\x00")
			fmt.Printf("--- feature skip %s %s\n", name, test)
		}
	}
	skipped = realSkips
	skipN = len(realSkips)
	if len(skipped) > 0 {
		fmt.Printf("\n=== SKIPPED (CI runs every suite: a skip is a failure)\n")
		for _, key := range skipped {
			name, test, _ := strings.Cut(key, "\x00")
			fmt.Printf("--- SKIP %s %s\n", name, test)
			for _, l := range output[key] {
				if strings.Contains(l, ".go:") {
					fmt.Printf("    %s\n", strings.TrimSpace(l))
				}
			}
		}
	}
	if len(stray) > 0 {
		fmt.Printf("\n=== output that is not test JSON\n%s\n", strings.Join(stray, "\n"))
	}

	fmt.Printf("\ntests: %d passed, %d failed, %d skipped\n", passN, failN, skipN)
	switch {
	case failN > 0 || pkgFailed > 0 || len(badBuild) > 0:
		os.Exit(1)
	case skipN > 0:
		fmt.Println("testreport: tests were skipped; every suite must run in CI")
		os.Exit(1)
	case passN == 0:
		fmt.Println("testreport: no test ran")
		os.Exit(1)
	}
}

// framing reports whether l is one of the runner's own progress lines,
// which say nothing the header does not.
func framing(l string) bool {
	t := strings.TrimSpace(l)
	for _, p := range []string{"=== RUN", "=== PAUSE", "=== CONT", "=== NAME", "--- FAIL:", "--- PASS:", "--- SKIP:"} {
		if strings.HasPrefix(t, p) {
			return true
		}
	}
	return false
}
