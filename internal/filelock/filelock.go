// Package filelock takes exclusive advisory locks on files (flock), which
// go with the process that holds them: a killed process leaves none behind.
// Where flock is not available (Supported is false), a lock is always
// granted.
package filelock

import "errors"

// ErrLocked is returned by TryLock when another open file holds the lock,
// in this process or another.
var ErrLocked = errors.New("locked by another holder")
