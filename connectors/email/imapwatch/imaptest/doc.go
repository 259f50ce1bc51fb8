// Package imaptest gives the email suites mailboxes to watch: an IMAP server
// in the test process (go-imap's imapmemserver on a random loopback port)
// and a fresh folder of its own on a real server (the Dovecot of
// .ci/mail-services.sh), so a suite neither depends on nor disturbs what
// other suites deliver to the shared INBOX. It lives under imapwatch so that
// go-imap stays behind that one package; only tests import it.
//
// Goroutines: a Server serves each connection in its own goroutine (as
// imapserver does) until Stop, which the test's cleanup calls; while a
// client idles, a timer goroutine wakes the session every idlePoll to
// report mail appended since (imapmemserver alone reports only changes made
// after IDLE began). Folder and Append open a connection per call and close
// it before returning. Failures call t.Fatal: this is test support.
package imaptest
