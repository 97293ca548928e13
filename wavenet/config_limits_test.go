package wavenet

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestConfigLimits: configs as a hostile or damaged checkpoint may carry
// them are refused by Validate, quickly and with the field and the limit
// named on one line, before New can allocate for them (each of these used
// to end in a fatal out-of-memory or a hang in New).
func TestConfigLimits(t *testing.T) {
	for _, tc := range []struct {
		mut  func(*Config)
		want string
	}{
		{func(c *Config) { c.ResidualChannels = 1e9 }, "residual_channels 1000000000 exceeds the limit 4096"},
		{func(c *Config) { c.CinPad = 1e8 }, "cin_pad 100000000 exceeds the limit 32"},
		{func(c *Config) { c.Layers, c.Stacks = 2e9, 1 }, "layers 2000000000 exceeds the limit 1024"},
		{func(c *Config) { c.KernelSize = 1e6 }, "kernel_size 1000000 exceeds the limit 64"},
		{func(c *Config) { c.GateChannels = 1 << 30 }, "gate_channels 1073741824 exceeds the limit 8192"},
		{func(c *Config) { c.SkipChannels = 5000 }, "skip_out_channels 5000 exceeds the limit 4096"},
		{func(c *Config) { c.CinChannels = 1 << 20 }, "cin_channels 1048576 exceeds the limit 4096"},
		{func(c *Config) { c.OutChannels = 2e9 }, "out_channels 2000000000 exceeds the limit 65536"},
		{func(c *Config) { c.InputChannels = 1 << 17 }, "in_channels 131072 exceeds the limit 65536"},
		{func(c *Config) { c.UpsampleScales = []int{1 << 20} }, "upsample_scales[0] 1048576 exceeds the limit 16384"},
		{func(c *Config) { c.UpsampleScales = []int{256, 256} }, "multiply to a hop size over the limit 16384"},
		{func(c *Config) { c.UpsampleScales = make([]int, 1000) }, "upsample_scales has 1000 entries, the limit is 16"},
		{func(c *Config) { c.Layers, c.Stacks = 1024, 1 }, "1024 layers per stack (dilations up to 2^1023), the limit is 21"},
		{func(c *Config) { c.Layers, c.Stacks, c.KernelSize = 40, 2, 64 }, "receptive field of 40 layers in 2 stacks with kernel_size 64"},
		{func(c *Config) {
			c.Layers, c.Stacks, c.ResidualChannels, c.GateChannels, c.KernelSize = 1024, 64, 4096, 8192, 64
		}, "parameters exceed the limit 1073741824"},
		{func(c *Config) { c.Layers, c.ResidualChannels = -1, -5 }, "layers must be >= 1, got -1; "},
	} {
		c := ReferenceConfig(256, 1)
		tc.mut(&c)
		start := time.Now()
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("Validate() = %v, want one line containing %q", err, tc.want)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("Validate took %v for %q", d, tc.want)
		}
	}
	// Real shapes stay well inside the limits.
	big := ReferenceConfig(65536, 65536)
	big.Layers, big.Stacks, big.ResidualChannels, big.GateChannels, big.SkipChannels = 60, 6, 512, 1024, 512
	for _, c := range []Config{ReferenceConfig(256, 256), ReferenceConfig(30, 1), TinyConfig(2, 1, 80), big} {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
}

// TestConfigTensorsMatchNew: the table a loader compares a checkpoint with
// is exactly the one New builds, for every structural variant.
func TestConfigTensorsMatchNew(t *testing.T) {
	noWN := TinyConfig(30, 1, 8)
	noWN.WeightNorm = false
	k1 := TinyConfig(256, 256, 5)
	k1.KernelSize, k1.CinPad, k1.UpsampleScales = 1, 0, []int{3, 1, 5}
	ref := ReferenceConfig(30, 1)
	for _, c := range []Config{TinyConfig(2, 1, 8), noWN, k1, ref} {
		m, err := New(c, &refBackend{}, 1)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := c.Tensors(), m.Tensors(); !reflect.DeepEqual(got, want) {
			t.Errorf("%+v: Config.Tensors() differs from New's table:\n got %+v\nwant %+v", c, got, want)
		}
		if c.NumParams() != m.NumParams() {
			t.Errorf("%+v: NumParams %d, New allocates %d", c, c.NumParams(), m.NumParams())
		}
		m.Free()
	}
}

// FuzzConfig: config JSON -> Validate -> model construction. Whatever the
// JSON, Validate returns promptly without panicking; a config it accepts
// stays within MaxParams and, when small enough to build here, New builds
// exactly the table Config.Tensors() promised.
func FuzzConfig(f *testing.F) {
	for _, c := range []Config{ReferenceConfig(30, 1), TinyConfig(2, 1, 8), TinyConfig(256, 256, 80)} {
		b, _ := json.Marshal(c)
		f.Add(b)
	}
	for _, s := range []string{
		`{"layers":4,"stacks":2,"residual_channels":1000000000,"gate_channels":32,"skip_out_channels":16,"kernel_size":3,"cin_channels":8,"cin_pad":2,"upsample_scales":[2,2],"in_channels":1,"out_channels":2}`,
		`{"layers":4,"stacks":2,"residual_channels":16,"gate_channels":32,"skip_out_channels":16,"kernel_size":3,"cin_channels":8,"cin_pad":100000000,"upsample_scales":[2,2],"in_channels":1,"out_channels":2}`,
		`{"layers":2000000000,"stacks":1,"residual_channels":16,"gate_channels":32,"skip_out_channels":16,"kernel_size":3,"cin_channels":8,"cin_pad":2,"upsample_scales":[2,2],"in_channels":1,"out_channels":2}`,
		`{"layers":4,"stacks":2,"residual_channels":16,"gate_channels":32,"skip_out_channels":16,"kernel_size":1000000,"cin_channels":8,"cin_pad":2,"upsample_scales":[2,2],"in_channels":1,"out_channels":2}`,
		`{"layers":4,"stacks":2,"residual_channels":16,"gate_channels":32,"skip_out_channels":16,"kernel_size":3,"cin_channels":8,"cin_pad":2,"upsample_scales":[2,2],"in_channels":1,"out_channels":2000000000}`,
		`{"layers":64,"stacks":1,"residual_channels":1,"gate_channels":2,"skip_out_channels":1,"kernel_size":2,"cin_channels":1,"cin_pad":0,"upsample_scales":[1],"in_channels":1,"out_channels":1}`,
		`{"layers":-1,"stacks":0,"gate_channels":-2,"upsample_scales":[-1,0,1]}`,
		`{}`, `null`, `[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var c Config
		if json.Unmarshal(data, &c) != nil {
			return
		}
		start := time.Now()
		err := c.Validate()
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("Validate took %v", d)
		}
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		n := c.NumParams()
		if n <= 0 || n > MaxParams || c.ReceptiveField() > MaxReceptiveField || c.HopSize() > MaxHopSize {
			t.Fatalf("accepted %+v: %d parameters, receptive field %d, hop %d", c, n, c.ReceptiveField(), c.HopSize())
		}
		if n > 1<<16 {
			return
		}
		m, err := New(c, &refBackend{}, 1)
		if err != nil {
			t.Fatalf("Validate accepted %+v but New failed: %v", c, err)
		}
		defer m.Free()
		if !reflect.DeepEqual(c.Tensors(), m.Tensors()) || m.NumParams() != n {
			t.Fatalf("%+v: Config.Tensors() differs from New's table", c)
		}
	})
}
