// Package dist is data-parallel training's plumbing: a Communicator (sum
// and broadcast over ranks), an in-process implementation for tests
// (goroutines as ranks), the launcher environment (torchrun, Slurm, Open
// MPI) and the TCP rendezvous that hands rank 0's NCCL unique id to every
// rank. The NCCL communicator itself lives in compute/cuda (it needs the
// backend's device pointers and stream); it satisfies Communicator.
//
// Why a seam: the training loop is written once against Communicator, and
// the property that matters (N ranks at batch B train exactly what one
// process at batch N*B does) is tested on the CPU with Local.
package dist

import "github.com/wavecat/wavecat/compute"

// Communicator is one rank's handle on a group of Size ranks. Every
// collective must be called by all ranks in the same order with the same
// sizes; it returns when this rank's result is in place. A collective that
// fails (a rank aborted, a timeout) returns an error naming the cause, and
// the group is unusable afterwards.
type Communicator interface {
	Rank() int
	Size() int
	// AllReduceSum replaces n float32 at v (a buffer of this rank's
	// backend) with their sum over all ranks. Every rank receives the same
	// bits.
	AllReduceSum(v compute.View, n int) error
	// StartAllReduceSum queues AllReduceSum(v, n) after the work already
	// queued on this rank's backend and returns without waiting for it,
	// so the reduction runs while the caller queues more work (the
	// backward pass of earlier layers). Queued reductions run in order;
	// v must not be written until Wait returns. Every rank must queue the
	// same sequence.
	StartAllReduceSum(v compute.View, n int) error
	// Wait returns when every queued reduction is done and ordered before
	// work queued on the backend afterwards, with the first error among
	// them. Every other collective waits for the queued ones first.
	Wait() error
	// AllReduceHost sums host float64 values over all ranks in place
	// (scalars: the loss, agreement checks).
	AllReduceHost(x []float64) error
	// Broadcast copies n float32 at v on rank root to v on every rank.
	Broadcast(v compute.View, n int, root int) error
	// Abort fails the group on behalf of this rank, so the other ranks'
	// pending and later collectives return an error naming it instead of
	// waiting for a rank that will never come.
	Abort(cause error)
	// Close releases this rank's resources after a run that ended well.
	Close() error
}
