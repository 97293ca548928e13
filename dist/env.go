package dist

import (
	"fmt"
	"hash/fnv"
	"net"
	"strconv"
	"strings"
)

// Env is this process's place in a job, as its launcher described it.
type Env struct {
	Launcher   string // "torchrun", "openmpi" or "slurm"
	Rank       int    // global rank, 0..WorldSize-1
	WorldSize  int
	LocalRank  int    // rank on this node: the GPU ordinal to use
	LocalSize  int    // ranks on this node (0: unknown)
	MasterAddr string // rank 0's host (an IPv6 literal without brackets)
	MasterPort int    // MASTER_PORT, or the launcher's default for it
	// RendezvousPort is where rank 0 hosts Meet: MasterPort, except where
	// the launcher itself already listens there. torchrun's agent does when
	// it sets TORCHELASTIC_USE_AGENT_STORE (static rendezvous, and c10d
	// since torch 2.4: its TCPStore holds MASTER_PORT on node 0), so the
	// rendezvous takes MasterPort+1. WAVECAT_RENDEZVOUS_PORT overrides it.
	RendezvousPort int
}

// Addr is MasterAddr:RendezvousPort, where rank 0 runs the rendezvous
// (MasterPort for an Env built by hand with no RendezvousPort).
func (e Env) Addr() string {
	port := e.RendezvousPort
	if port == 0 {
		port = e.MasterPort
	}
	return net.JoinHostPort(e.MasterAddr, strconv.Itoa(port))
}

// DefaultPort is torchrun's MASTER_PORT default.
const DefaultPort = 29500

// RendezvousPortVar, when set, is the rendezvous port (Env.RendezvousPort)
// whatever the launcher.
const RendezvousPortVar = "WAVECAT_RENDEZVOUS_PORT"

// FromEnv reads the launcher's variables. ok is false when the process was
// not started by a launcher (or by one that started a single task, as any
// Slurm job step or mpirun -n 1 does: that is not a distributed run).
//
// Precedence: torchrun's RANK/WORLD_SIZE (torchrun inside a Slurm
// allocation sets both, and RANK is the per-GPU one), then Open MPI (mpirun
// inside Slurm sets both too), then Slurm. WORLD_SIZE without RANK is
// left to Open MPI and Slurm (scripts export WORLD_SIZE=$SLURM_NTASKS before
// srun). Slurm counts only inside a job step (srun sets SLURM_STEP_ID): a
// batch script's own SLURM_PROCID=0 with SLURM_NTASKS=4 would otherwise wait
// for three ranks that never start.
//
// The rendezvous port is MASTER_PORT when set. Otherwise Slurm and Open MPI
// derive it from the job's identity (Slurm's job and step ids; Open MPI's
// job id), so that jobs and job steps sharing a node do not share it;
// without one it is DefaultPort. WAVECAT_RENDEZVOUS_PORT, when set, is the
// port whatever the launcher (for clusters where the derived port, or
// MASTER_PORT+1 under torchrun's agent store, is taken).
func FromEnv(getenv func(string) string) (e Env, ok bool, err error) {
	val := func(name string) string { return strings.TrimSpace(getenv(name)) }
	set := func(name string) bool { return name != "" && val(name) != "" }
	num := func(name string, lo int) (int, error) {
		s := val(name)
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
		if !set(name) {
			return def, nil
		}
		return num(name, lo)
	}
	port := func(name string, def int) (int, error) {
		p, err := optNum(name, 1, def)
		if err == nil && p > 65535 {
			err = fmt.Errorf("dist: %s=%d is not a TCP port", name, p)
		}
		return p, err
	}
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

	defAddr, defPort := "", DefaultPort // MASTER_ADDR's and MASTER_PORT's defaults
	switch {
	case set("RANK"):
		e.Launcher = "torchrun"
		if err := fill("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"); err != nil {
			return Env{}, false, err
		}
		// torchrun always sets both; a hand-made environment must too.
		if !set("MASTER_ADDR") {
			return Env{}, false, fmt.Errorf("dist: torchrun-style launch (RANK/WORLD_SIZE set): MASTER_ADDR is not set")
		}
	case set("OMPI_COMM_WORLD_RANK") || set("OMPI_COMM_WORLD_SIZE"):
		e.Launcher = "openmpi"
		if err := fill("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"); err != nil {
			return Env{}, false, err
		}
		// The job's id, the same on every rank: Open MPI 4's ORTE sets
		// the first, PMIx (Open MPI 5's PRRTE) the second.
		for _, id := range []string{"OMPI_MCA_ess_base_jobid", "PMIX_NAMESPACE"} {
			if set(id) {
				defPort = jobPort("openmpi " + val(id))
				break
			}
		}
	case set("SLURM_PROCID") && (set("SLURM_STEP_ID") || set("SLURM_STEPID")):
		e.Launcher = "slurm"
		ntasks := "SLURM_NTASKS"
		if !set(ntasks) && set("SLURM_NPROCS") {
			ntasks = "SLURM_NPROCS" // older Slurm's name for it
		}
		// SLURM_STEP_TASKS_PER_NODE is a list ("4(x2),3"): not a count.
		if err := fill("SLURM_PROCID", ntasks, "SLURM_LOCALID", ""); err != nil {
			return Env{}, false, err
		}
		if val("SLURM_STEP_NUM_NODES") == "1" {
			e.LocalSize = e.WorldSize
		}
		// The first node of the step's node list runs rank 0 (srun's
		// default block distribution).
		if defAddr = firstHost(getenv("SLURM_STEP_NODELIST")); defAddr == "" {
			defAddr = firstHost(getenv("SLURM_JOB_NODELIST"))
		}
		// Steps of one job can share a node (srun ... & srun ... &).
		step := val("SLURM_STEP_ID")
		if step == "" {
			step = val("SLURM_STEPID")
		}
		job, errJ := strconv.ParseUint(val("SLURM_JOB_ID"), 10, 64)
		stepN, errS := strconv.ParseUint(step, 10, 64)
		switch {
		case errJ == nil && errS == nil:
			// Jobs with nearby ids (those running now) and the first 16
			// steps of a job get distinct ports: a hash would make
			// 1 pair in 10000 collide.
			defPort = 15000 + int((job*16+stepN%16)%10000)
		case val("SLURM_JOB_ID") != "":
			defPort = jobPort("slurm " + val("SLURM_JOB_ID") + "." + step)
		}
	case set("WORLD_SIZE"):
		return Env{}, false, fmt.Errorf("dist: WORLD_SIZE is set but RANK is not, and no Open MPI rank or Slurm job step (srun) names this process's rank: export RANK too, or start the program with srun or mpirun")
	default:
		return Env{}, false, nil
	}
	if e.WorldSize == 1 && e.Launcher != "torchrun" {
		return Env{}, false, nil
	}
	if e.LocalSize == e.WorldSize {
		defAddr = "127.0.0.1" // one node: rank 0 is on this machine
	}

	e.MasterAddr = val("MASTER_ADDR")
	if n := len(e.MasterAddr); n >= 2 && e.MasterAddr[0] == '[' && e.MasterAddr[n-1] == ']' {
		e.MasterAddr = e.MasterAddr[1 : n-1] // "[::1]": JoinHostPort adds them back
	}
	if e.MasterAddr == "" {
		if defAddr == "" {
			hint := "export it as the host name of rank 0's node"
			if e.Launcher == "openmpi" {
				hint = "pass it to every rank: mpirun -x MASTER_ADDR=<host of rank 0> ..."
			}
			return Env{}, false, fmt.Errorf("dist: %s: MASTER_ADDR is not set (%s)", e.Launcher, hint)
		}
		e.MasterAddr = defAddr
	}
	if e.MasterPort, err = port("MASTER_PORT", defPort); err != nil {
		return Env{}, false, err
	}
	e.RendezvousPort = e.MasterPort
	switch v := val("TORCHELASTIC_USE_AGENT_STORE"); {
	case set(RendezvousPortVar):
		if e.RendezvousPort, err = port(RendezvousPortVar, 0); err != nil {
			return Env{}, false, err
		}
	case e.Launcher == "torchrun" && (strings.EqualFold(v, "true") || v == "1"):
		if e.MasterPort == 65535 {
			return Env{}, false, fmt.Errorf("dist: torchrun's agent serves its store on MASTER_PORT=65535 (TORCHELASTIC_USE_AGENT_STORE=%s) and the rendezvous takes the next port, which does not exist: use a lower --master-port or set %s", v, RendezvousPortVar)
		}
		e.RendezvousPort = e.MasterPort + 1
	}
	return e, true, nil
}

// jobPort is a job's default rendezvous port: a hash of its identity into
// 15000..24999, below Linux's ephemeral ports (32768 up) so that no
// outgoing connection holds it.
func jobPort(id string) int {
	h := fnv.New32a()
	h.Write([]byte(id))
	return 15000 + int(h.Sum32()%10000)
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
