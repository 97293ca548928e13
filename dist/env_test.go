package dist

import (
	"strings"
	"testing"
)

func TestFromEnv(t *testing.T) {
	for _, c := range []struct {
		name string
		env  map[string]string
		ok   bool
		want Env
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
			want: Env{Launcher: "slurm", Rank: 5, WorldSize: 8, LocalRank: 1, MasterAddr: "gpu07", MasterPort: 15000 + 3456}},
		{name: "slurm single node", ok: true,
			env: map[string]string{"SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_LOCALID": "1", "SLURM_STEPID": "0",
				"SLURM_STEP_NUM_NODES": "1", "MASTER_PORT": "4000"},
			want: Env{Launcher: "slurm", Rank: 1, WorldSize: 2, LocalRank: 1, LocalSize: 2, MasterAddr: "127.0.0.1", MasterPort: 4000}},
		{name: "slurm batch script is not a step",
			env: map[string]string{"SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_LOCALID": "0", "SLURM_JOB_ID": "1"}},
		{name: "slurm local id beyond rank", err: "do not fit",
			env: map[string]string{"SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_LOCALID": "2", "SLURM_STEP_ID": "0", "MASTER_ADDR": "h"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, ok, err := FromEnv(func(k string) string { return c.env[k] })
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one containing %q", err, c.err)
				}
				return
			}
			if err != nil || ok != c.ok || e != c.want {
				t.Fatalf("got %+v ok=%v err=%v, want %+v ok=%v", e, ok, err, c.want, c.ok)
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
