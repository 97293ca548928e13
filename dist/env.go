package dist

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Env is this process's place in a job, as its launcher described it.
type Env struct {
	Launcher   string // "torchrun", "openmpi" or "slurm"
	Rank       int    // global rank, 0..WorldSize-1
	WorldSize  int
	LocalRank  int // rank on this node: the GPU ordinal to use
	LocalSize  int // ranks on this node (0: unknown)
	MasterAddr string
	MasterPort int
}

// Addr is MASTER_ADDR:MASTER_PORT, where rank 0 runs the rendezvous.
func (e Env) Addr() string { return net.JoinHostPort(e.MasterAddr, strconv.Itoa(e.MasterPort)) }

// DefaultPort is torchrun's MASTER_PORT default.
const DefaultPort = 29500

// FromEnv reads the launcher's variables. ok is false when the process was
// not started by a launcher (or by one that started a single task, as any
// Slurm job step or mpirun -n 1 does: that is not a distributed run).
//
// Precedence: torchrun's RANK/WORLD_SIZE (torchrun inside a Slurm
// allocation sets both, and RANK is the per-GPU one), then Open MPI (mpirun
// inside Slurm sets both too), then Slurm. Slurm counts only inside a job
// step (srun sets SLURM_STEP_ID): a batch script's own SLURM_PROCID=0 with
// SLURM_NTASKS=4 would otherwise wait for three ranks that never start.
func FromEnv(getenv func(string) string) (e Env, ok bool, err error) {
	num := func(name string, lo int) (int, error) {
		s := strings.TrimSpace(getenv(name))
		if s == "" {
			return 0, fmt.Errorf("dist: %s is not set", name)
		}
		v, err := strconv.Atoi(s)
		if err != nil || v < lo {
			return 0, fmt.Errorf("dist: %s=%q is not an integer >= %d", name, s, lo)
		}
		return v, nil
	}
	optNum := func(name string, lo, def int) (int, error) {
		if name == "" || strings.TrimSpace(getenv(name)) == "" {
			return def, nil
		}
		return num(name, lo)
	}
	set := func(name string) bool { return name != "" && strings.TrimSpace(getenv(name)) != "" }
	fill := func(rank, world, local, localSize string) error {
		var err error
		if e.Rank, err = num(rank, 0); err != nil {
			return err
		}
		if e.WorldSize, err = num(world, 1); err != nil {
			return err
		}
		if e.LocalRank, err = num(local, 0); err != nil {
			return err
		}
		if e.LocalSize, err = optNum(localSize, 1, 0); err != nil {
			return err
		}
		if e.Rank >= e.WorldSize {
			return fmt.Errorf("dist: %s=%d is not below %s=%d", rank, e.Rank, world, e.WorldSize)
		}
		if e.LocalSize > 0 && e.LocalRank >= e.LocalSize {
			return fmt.Errorf("dist: %s=%d is not below %s=%d", local, e.LocalRank, localSize, e.LocalSize)
		}
		if e.LocalRank > e.Rank || (e.LocalSize > e.WorldSize) {
			return fmt.Errorf("dist: local rank %d / local size %d do not fit global rank %d of %d", e.LocalRank, e.LocalSize, e.Rank, e.WorldSize)
		}
		return nil
	}
	// single-node jobs need no MASTER_ADDR: rank 0 is on this machine
	master := func(defaultAddr string) error {
		e.MasterAddr = strings.TrimSpace(getenv("MASTER_ADDR"))
		if e.MasterAddr == "" {
			if defaultAddr == "" {
				return fmt.Errorf("dist: %s: MASTER_ADDR is not set (export it as the host name of rank 0's node)", e.Launcher)
			}
			e.MasterAddr = defaultAddr
		}
		var err error
		e.MasterPort, err = optNum("MASTER_PORT", 1, DefaultPort)
		if err == nil && e.MasterPort > 65535 {
			err = fmt.Errorf("dist: MASTER_PORT=%d is not a TCP port", e.MasterPort)
		}
		return err
	}
	singleNode := func() string {
		if e.LocalSize == e.WorldSize {
			return "127.0.0.1"
		}
		return ""
	}

	switch {
	case set("RANK") || set("WORLD_SIZE"):
		e.Launcher = "torchrun"
		if err := fill("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"); err != nil {
			return Env{}, false, err
		}
		// torchrun always sets both; a hand-made environment must too.
		if !set("MASTER_ADDR") {
			return Env{}, false, fmt.Errorf("dist: torchrun-style launch (RANK/WORLD_SIZE set): MASTER_ADDR is not set")
		}
		if err := master(""); err != nil {
			return Env{}, false, err
		}
		return e, true, nil
	case set("OMPI_COMM_WORLD_RANK") || set("OMPI_COMM_WORLD_SIZE"):
		e.Launcher = "openmpi"
		if err := fill("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"); err != nil {
			return Env{}, false, err
		}
	case set("SLURM_PROCID") && (set("SLURM_STEP_ID") || set("SLURM_STEPID")):
		e.Launcher = "slurm"
		// SLURM_STEP_TASKS_PER_NODE is a list ("4(x2),3"): not a count.
		if err := fill("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", ""); err != nil {
			return Env{}, false, err
		}
		if strings.TrimSpace(getenv("SLURM_STEP_NUM_NODES")) == "1" {
			e.LocalSize = e.WorldSize
		}
		if e.WorldSize > 1 && !set("MASTER_ADDR") && singleNode() == "" {
			// The first node of the step's node list runs rank 0
			// (srun's default block distribution).
			if h := firstHost(getenv("SLURM_STEP_NODELIST")); h != "" {
				e.MasterAddr = h
			} else if h := firstHost(getenv("SLURM_JOB_NODELIST")); h != "" {
				e.MasterAddr = h
			}
		}
		if e.WorldSize > 1 && !set("MASTER_PORT") {
			// Jobs sharing a node must not share a port: derive it
			// from the job id.
			if id, err := strconv.Atoi(strings.TrimSpace(getenv("SLURM_JOB_ID"))); err == nil {
				e.MasterPort = 15000 + id%10000
			}
		}
	default:
		return Env{}, false, nil
	}
	if e.WorldSize == 1 {
		return Env{}, false, nil
	}
	def, port := singleNode(), e.MasterPort
	if def == "" {
		def = e.MasterAddr // from Slurm's node list
	}
	if err := master(def); err != nil {
		return Env{}, false, err
	}
	if port != 0 && !set("MASTER_PORT") {
		e.MasterPort = port
	}
	return e, true, nil
}

// firstHost returns the first host of a Slurm node list such as
// "gpu[01-04,07],cpu1" ("gpu01"); "" when it cannot tell.
func firstHost(list string) string {
	list = strings.TrimSpace(list)
	if list == "" {
		return ""
	}
	end := strings.IndexAny(list, ",[")
	if end < 0 {
		return list
	}
	if list[end] == ',' {
		return list[:end]
	}
	prefix, rest := list[:end], list[end+1:]
	close := strings.IndexByte(rest, ']')
	if close < 0 {
		return ""
	}
	first := strings.FieldsFunc(rest[:close], func(r rune) bool { return r == ',' || r == '-' })
	if len(first) == 0 {
		return ""
	}
	return prefix + first[0] + firstHost(rest[close+1:]) // "r[1-2]-n[1-4]": r1-n1
}
