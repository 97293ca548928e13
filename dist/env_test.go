package dist

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

func TestFromEnv(t *testing.T) {
	for _, c := range []struct {
		name string
		env  map[string]string
		ok   bool
		want Env    // RendezvousPort 0: MasterPort
		addr string // Addr(), when given
		err  string
	}{
		{name: "no launcher", env: map[string]string{"HOME": "/root"}},
		{name: "torchrun", ok: true,
			env:  map[string]string{"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4", "MASTER_ADDR": "node0", "MASTER_PORT": "29400"},
			want: Env{Launcher: "torchrun", Rank: 5, WorldSize: 8, LocalRank: 1, LocalSize: 4, MasterAddr: "node0", MasterPort: 29400}},
		{name: "torchrun single rank is distributed", ok: true,
			env:  map[string]string{"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"},
			want: Env{Launcher: "torchrun", Rank: 0, WorldSize: 1, MasterAddr: "127.0.0.1", MasterPort: DefaultPort}},
		{name: "torchrun wins over slurm", ok: true,
			env: map[string]string{"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "3", "MASTER_ADDR": "h", "MASTER_PORT": "1",
				"SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_LOCALID": "0", "SLURM_STEP_ID": "0"},
			want: Env{Launcher: "torchrun", Rank: 3, WorldSize: 4, LocalRank: 3, MasterAddr: "h", MasterPort: 1}},
		{name: "torchrun without LOCAL_RANK", err: "LOCAL_RANK is not set",
			env: map[string]string{"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "h"}},
		{name: "torchrun without MASTER_ADDR", err: "MASTER_ADDR is not set",
			env: map[string]string{"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}},
		{name: "rank not below world size", err: "RANK=2 is not below WORLD_SIZE=2",
			env: map[string]string{"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "h"}},
		{name: "RANK without WORLD_SIZE", err: "WORLD_SIZE is not set",
			env: map[string]string{"RANK": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "h"}},
		{name: "garbage", err: `WORLD_SIZE="two" is not an integer >= 1`,
			env: map[string]string{"RANK": "1", "WORLD_SIZE": "two", "LOCAL_RANK": "0", "MASTER_ADDR": "h"}},
		{name: "bad port", err: "MASTER_PORT=70000 is not a TCP port",
			env: map[string]string{"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "70000"}},
		{name: "open mpi multi-node", ok: true,
			env: map[string]string{"OMPI_COMM_WORLD_RANK": "6", "OMPI_COMM_WORLD_SIZE": "8", "OMPI_COMM_WORLD_LOCAL_RANK": "2",
				"OMPI_COMM_WORLD_LOCAL_SIZE": "4", "MASTER_ADDR": "gpu01"},
			want: Env{Launcher: "openmpi", Rank: 6, WorldSize: 8, LocalRank: 2, LocalSize: 4, MasterAddr: "gpu01", MasterPort: DefaultPort}},
		{name: "open mpi single node needs no MASTER_ADDR", ok: true,
			env:  map[string]string{"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_LOCAL_RANK": "1", "OMPI_COMM_WORLD_LOCAL_SIZE": "2"},
			want: Env{Launcher: "openmpi", Rank: 1, WorldSize: 2, LocalRank: 1, LocalSize: 2, MasterAddr: "127.0.0.1", MasterPort: DefaultPort}},
		{name: "open mpi multi-node without MASTER_ADDR", err: "openmpi: MASTER_ADDR is not set",
			env: map[string]string{"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "8", "OMPI_COMM_WORLD_LOCAL_RANK": "1", "OMPI_COMM_WORLD_LOCAL_SIZE": "4"}},
		{name: "mpirun -n 1 is not distributed",
			env: map[string]string{"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "1", "OMPI_COMM_WORLD_LOCAL_RANK": "0"}},
		{name: "slurm step across nodes", ok: true,
			env: map[string]string{"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_STEP_ID": "0",
				"SLURM_STEP_NUM_NODES": "2", "SLURM_STEP_NODELIST": "gpu[07-08]", "SLURM_JOB_ID": "123456"},
			want: Env{Launcher: "slurm", Rank: 5, WorldSize: 8, LocalRank: 1, MasterAddr: "gpu07", MasterPort: 20296}},
		{name: "slurm single node", ok: true,
			env: map[string]string{"SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_LOCALID": "1", "SLURM_STEPID": "0",
				"SLURM_STEP_NUM_NODES": "1", "MASTER_PORT": "4000"},
			want: Env{Launcher: "slurm", Rank: 1, WorldSize: 2, LocalRank: 1, LocalSize: 2, MasterAddr: "127.0.0.1", MasterPort: 4000}},
		{name: "slurm batch script is not a step",
			env: map[string]string{"SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_LOCALID": "0", "SLURM_JOB_ID": "1"}},
		{name: "slurm local id beyond rank", err: "do not fit",
			env: map[string]string{"SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_LOCALID": "2", "SLURM_STEP_ID": "0", "MASTER_ADDR": "h"}},
		// torchrun's agent holds MASTER_PORT for its own store: meet next door.
		{name: "torchrun agent store", ok: true, addr: "node0:29401",
			env: map[string]string{"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "node0", "MASTER_PORT": "29400",
				"TORCHELASTIC_USE_AGENT_STORE": "True"},
			want: Env{Launcher: "torchrun", Rank: 0, WorldSize: 2, MasterAddr: "node0", MasterPort: 29400, RendezvousPort: 29401}},
		{name: "torchrun agent store 1", ok: true, addr: "h:29501",
			env:  map[string]string{"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "h", "TORCHELASTIC_USE_AGENT_STORE": "1"},
			want: Env{Launcher: "torchrun", Rank: 1, WorldSize: 2, LocalRank: 1, MasterAddr: "h", MasterPort: DefaultPort, RendezvousPort: DefaultPort + 1}},
		{name: "torchrun without agent store", ok: true, addr: "h:29400",
			env:  map[string]string{"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "29400", "TORCHELASTIC_USE_AGENT_STORE": "False"},
			want: Env{Launcher: "torchrun", Rank: 1, WorldSize: 2, LocalRank: 1, MasterAddr: "h", MasterPort: 29400}},
		{name: "torchrun agent store on the last port", err: "MASTER_PORT=65535",
			env: map[string]string{"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "65535", "TORCHELASTIC_USE_AGENT_STORE": "true"}},
		{name: "explicit rendezvous port", ok: true, addr: "h:31000",
			env: map[string]string{"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "65535", "TORCHELASTIC_USE_AGENT_STORE": "true",
				"WAVECAT_RENDEZVOUS_PORT": "31000"},
			want: Env{Launcher: "torchrun", Rank: 1, WorldSize: 2, LocalRank: 1, MasterAddr: "h", MasterPort: 65535, RendezvousPort: 31000}},
		{name: "explicit rendezvous port under slurm", ok: true, addr: "127.0.0.1:31000",
			env: map[string]string{"SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_LOCALID": "1", "SLURM_STEP_ID": "0", "SLURM_STEP_NUM_NODES": "1",
				"SLURM_JOB_ID": "123456", "WAVECAT_RENDEZVOUS_PORT": " 31000 "},
			want: Env{Launcher: "slurm", Rank: 1, WorldSize: 2, LocalRank: 1, LocalSize: 2, MasterAddr: "127.0.0.1", MasterPort: 20296, RendezvousPort: 31000}},
		{name: "bad rendezvous port", err: "WAVECAT_RENDEZVOUS_PORT=70000 is not a TCP port",
			env: map[string]string{"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "h", "WAVECAT_RENDEZVOUS_PORT": "70000"}},
		{name: "bracketed IPv6 MASTER_ADDR", ok: true, addr: "[::1]:29500",
			env:  map[string]string{"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "[::1]"},
			want: Env{Launcher: "torchrun", Rank: 1, WorldSize: 2, LocalRank: 1, MasterAddr: "::1", MasterPort: DefaultPort}},
		// export WORLD_SIZE=$SLURM_NTASKS; srun ...
		{name: "WORLD_SIZE without RANK in a slurm step", ok: true,
			env: map[string]string{"WORLD_SIZE": "2", "SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_LOCALID": "1", "SLURM_STEP_ID": "0",
				"SLURM_STEP_NUM_NODES": "1", "MASTER_PORT": "4000"},
			want: Env{Launcher: "slurm", Rank: 1, WorldSize: 2, LocalRank: 1, LocalSize: 2, MasterAddr: "127.0.0.1", MasterPort: 4000}},
		{name: "WORLD_SIZE without RANK under mpirun", ok: true,
			env: map[string]string{"WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_LOCAL_RANK": "1",
				"OMPI_COMM_WORLD_LOCAL_SIZE": "2"},
			want: Env{Launcher: "openmpi", Rank: 1, WorldSize: 2, LocalRank: 1, LocalSize: 2, MasterAddr: "127.0.0.1", MasterPort: DefaultPort}},
		{name: "WORLD_SIZE alone", err: "WORLD_SIZE is set but RANK is not",
			env: map[string]string{"WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "h"}},
		{name: "WORLD_SIZE in a batch script", err: "WORLD_SIZE is set but RANK is not",
			env: map[string]string{"WORLD_SIZE": "4", "SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_LOCALID": "0", "SLURM_JOB_ID": "1"}},
		{name: "slurm SLURM_NPROCS", ok: true,
			env: map[string]string{"SLURM_PROCID": "1", "SLURM_NPROCS": "2", "SLURM_LOCALID": "1", "SLURM_STEPID": "0",
				"SLURM_STEP_NUM_NODES": "1", "MASTER_PORT": "4000"},
			want: Env{Launcher: "slurm", Rank: 1, WorldSize: 2, LocalRank: 1, LocalSize: 2, MasterAddr: "127.0.0.1", MasterPort: 4000}},
		{name: "open mpi MASTER_ADDR hint", err: "mpirun -x MASTER_ADDR=<host of rank 0>",
			env: map[string]string{"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "8", "OMPI_COMM_WORLD_LOCAL_RANK": "1", "OMPI_COMM_WORLD_LOCAL_SIZE": "4"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, ok, err := FromEnv(func(k string) string { return c.env[k] })
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one containing %q", err, c.err)
				}
				return
			}
			if c.ok && c.want.RendezvousPort == 0 {
				c.want.RendezvousPort = c.want.MasterPort
			}
			if err != nil || ok != c.ok || e != c.want {
				t.Fatalf("got %+v ok=%v err=%v, want %+v ok=%v", e, ok, err, c.want, c.ok)
			}
			if c.addr != "" && e.Addr() != c.addr {
				t.Errorf("Addr() = %q, want %q", e.Addr(), c.addr)
			}
		})
	}
}

func TestFirstHost(t *testing.T) {
	for in, want := range map[string]string{
		"gpu01": "gpu01", "gpu01,gpu02": "gpu01", "gpu[01-04,07],cpu1": "gpu01", "gpu[3,5]": "gpu3",
		"rack[1-2]-n[1-4]": "rack1-n1", "": "", "bad[1-": "",
	} {
		if got := firstHost(in); got != want {
			t.Errorf("firstHost(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAddrOfHandMadeEnv(t *testing.T) {
	if got := (Env{MasterAddr: "::1", MasterPort: 4000}).Addr(); got != "[::1]:4000" {
		t.Errorf("Addr() = %q", got)
	}
}

// TestDerivedPorts: every task of a Slurm step (or rank of an Open MPI job)
// derives the same port, and two steps of one job, or two jobs, do not.
func TestDerivedPorts(t *testing.T) {
	port := func(env map[string]string) int {
		t.Helper()
		e, ok, err := FromEnv(func(k string) string { return env[k] })
		if err != nil || !ok {
			t.Fatalf("%v: ok=%v %v", env, ok, err)
		}
		if e.MasterPort < 15000 || e.MasterPort > 24999 || e.RendezvousPort != e.MasterPort {
			t.Errorf("%v: port %d / %d, want one in 15000..24999", env, e.MasterPort, e.RendezvousPort)
		}
		return e.MasterPort
	}
	slurm := func(rank, job, step string) map[string]string {
		return map[string]string{"SLURM_PROCID": rank, "SLURM_NTASKS": "2", "SLURM_LOCALID": rank, "SLURM_STEP_NUM_NODES": "1",
			"SLURM_JOB_ID": job, "SLURM_STEP_ID": step}
	}
	if a, b := port(slurm("0", "123456", "0")), port(slurm("1", "123456", "0")); a != b {
		t.Errorf("slurm ranks of one step: ports %d and %d", a, b)
	}
	if a, b := port(slurm("0", "123456", "0")), port(slurm("0", "123456", "1")); a == b {
		t.Errorf("slurm steps 0 and 1 of one job share port %d", a)
	}
	if a, b := port(slurm("0", "123456", "0")), port(slurm("0", "123457", "0")); a == b {
		t.Errorf("slurm jobs 123456 and 123457 share port %d", a)
	}
	// Jobs running at the same time have nearby ids: none of 500
	// consecutive jobs' first 16 steps share a port.
	seen := map[int]string{}
	for job := 7000; job < 7500; job++ {
		for step := range 16 {
			p := port(slurm("0", strconv.Itoa(job), strconv.Itoa(step)))
			if other, ok := seen[p]; ok {
				t.Fatalf("slurm job %d step %d and %s share port %d", job, step, other, p)
			}
			seen[p] = fmt.Sprintf("job %d step %d", job, step)
		}
	}
	if a, b := port(slurm("0", "123456_7", "0")), port(slurm("0", "123456_8", "0")); a == b {
		t.Errorf("array jobs 123456_7 and _8 share port %d", a)
	}
	for _, id := range []string{"OMPI_MCA_ess_base_jobid", "PMIX_NAMESPACE"} {
		mpi := func(rank, job string) map[string]string {
			return map[string]string{"OMPI_COMM_WORLD_RANK": rank, "OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_LOCAL_RANK": rank,
				"OMPI_COMM_WORLD_LOCAL_SIZE": "2", id: job}
		}
		if a, b := port(mpi("0", "2404974593")), port(mpi("1", "2404974593")); a != b {
			t.Errorf("%s: ranks of one job: ports %d and %d", id, a, b)
		}
		if a, b := port(mpi("0", "2404974593")), port(mpi("0", "2404974594")); a == b {
			t.Errorf("%s: two jobs share port %d", id, a)
		}
	}
}
