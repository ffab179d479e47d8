//go:build unix

package filelock

import (
	"errors"
	"path/filepath"
	"testing"
)

func TestALockIsHeldUntilReleased(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	release, err := TryLock(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := TryLock(path); !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock: %v, want ErrLocked", err)
	}
	release()
	again, err := TryLock(path)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	again()
	if _, err := TryLock(filepath.Join(t.TempDir(), "missing", "lock")); err == nil {
		t.Error("lock in a missing directory: no error")
	}
}
