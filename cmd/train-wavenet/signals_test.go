package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSignalHelperProcess is not a test: the signal tests run the test
// binary again as a training process, which installs the training handler,
// says "stopping" when it is told to stop, then "saves" for
// $WC_SIGNAL_SAVE and exits 0.
func TestSignalHelperProcess(t *testing.T) {
	if os.Getenv("WC_SIGNAL_HELPER") == "" {
		return // the signal tests' helper process only
	}
	grace, _ := time.ParseDuration(os.Getenv("WC_SIGNAL_GRACE"))
	save, _ := time.ParseDuration(os.Getenv("WC_SIGNAL_SAVE"))
	ctx, cancel := context.WithCancel(context.Background())
	release := handleStopSignals(grace, func(s os.Signal) {
		fmt.Println("stopping:", s)
		cancel()
	})
	fmt.Println("ready")
	<-ctx.Done()
	time.Sleep(save)
	release()
	fmt.Println("saved")
	os.Exit(0)
}

// signalHelper starts TestSignalHelperProcess and waits until its handler
// is installed.
func signalHelper(t *testing.T, grace, save time.Duration) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSignalHelperProcess$")
	cmd.Env = append(os.Environ(), "WC_SIGNAL_HELPER=1", "WC_SIGNAL_GRACE="+grace.String(), "WC_SIGNAL_SAVE="+save.String())
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := bufio.NewScanner(out)
	expectLine(t, lines, "ready")
	return cmd, lines
}

func expectLine(t *testing.T, lines *bufio.Scanner, prefix string) {
	t.Helper()
	if !lines.Scan() || !strings.HasPrefix(lines.Text(), prefix) {
		t.Fatalf("helper said %q (%v), want %q", lines.Text(), lines.Err(), prefix)
	}
}

// TestSignalTwiceStillSaves: Slurm, systemd and the --gpus launcher may
// each deliver the same SIGTERM, milliseconds apart; the second must not
// kill a rank that is saving.
func TestSignalTwiceStillSaves(t *testing.T) {
	cmd, lines := signalHelper(t, stopGrace, 500*time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	expectLine(t, lines, "stopping: terminated")
	cmd.Process.Signal(syscall.SIGTERM) // after the handler saw the first
	if lines.Scan(); lines.Text() != "saved" {
		t.Errorf("helper said %q after the second SIGTERM, want saved", lines.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper exited %v, want the graceful exit 0", err)
	}
}

// TestSignalLateRepeatAborts: a repeat after the grace window is a user's
// second Ctrl-C, which kills at once (the signal's default action).
func TestSignalLateRepeatAborts(t *testing.T) {
	const grace = 100 * time.Millisecond
	cmd, lines := signalHelper(t, grace, time.Minute)
	cmd.Process.Signal(os.Interrupt)
	expectLine(t, lines, "stopping: interrupt")
	time.Sleep(3 * grace) // the handler measures from before it said "stopping"
	cmd.Process.Signal(os.Interrupt)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("helper exited %v, want killed by SIGINT", err)
	}
	if ws := ee.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGINT {
		t.Fatalf("helper exited %v, want killed by SIGINT", err)
	}
}

// TestStopSignals: the handler's decisions, without processes.
func TestStopSignals(t *testing.T) {
	for _, c := range []struct {
		grace       time.Duration
		sent        int
		stop, abort int
	}{
		{grace: time.Hour, sent: 1, stop: 1},
		{grace: time.Hour, sent: 3, stop: 1},   // repeats within the window: ignored
		{grace: 0, sent: 2, stop: 1, abort: 1}, // a later repeat aborts
		{grace: 0, sent: 3, stop: 1, abort: 1}, // once: then the handler is gone
	} {
		sig, done := make(chan os.Signal), make(chan struct{})
		var stops, aborts int
		finished := make(chan struct{})
		go func() {
			stopSignals(sig, done, c.grace, func(os.Signal) { stops++ }, func(os.Signal) { aborts++ })
			close(finished)
		}()
		sent := 0
	send:
		for ; sent < c.sent; sent++ {
			select {
			case sig <- syscall.SIGTERM:
			case <-finished:
				break send
			}
		}
		close(done)
		<-finished
		if stops != c.stop || aborts != c.abort {
			t.Errorf("grace %v, %d signals: %d stops, %d aborts; want %d, %d", c.grace, c.sent, stops, aborts, c.stop, c.abort)
		}
	}
}
