package cuda

import (
	"errors"
	"strings"
	"testing"
)

// TestDeviceCount: DeviceCount reports the driver's count and refuses, with
// New's ErrNoDevice, a driver that sees no GPU (cuInit's
// CUDA_ERROR_NO_DEVICE, or a count of 0), naming CUDA_VISIBLE_DEVICES.
func TestDeviceCount(t *testing.T) {
	d := &driverAPI{lib: &library{path: "fake-libcuda"}}
	initRes, count := cuResult(cuSuccess), int32(3)
	d.cuInit = func(uint32) cuResult { return initRes }
	d.cuDeviceGetCount = func(n *int32) cuResult { *n = count; return cuSuccess }
	loadMu.Lock()
	old := driverLib
	driverLib = d
	loadMu.Unlock()
	t.Cleanup(func() {
		loadMu.Lock()
		driverLib = old
		loadMu.Unlock()
	})

	if n, err := DeviceCount(); err != nil || n != 3 {
		t.Fatalf("DeviceCount = %d, %v; want 3", n, err)
	}
	count = 0
	if _, err := DeviceCount(); !errors.Is(err, ErrNoDevice) || !strings.Contains(err.Error(), "reports 0 devices") {
		t.Errorf("count 0: %v", err)
	}
	initRes = cuErrorNoDevice
	if _, err := DeviceCount(); !errors.Is(err, ErrNoDevice) || !strings.Contains(err.Error(), "CUDA_VISIBLE_DEVICES") {
		t.Errorf("cuInit without a device: %v", err)
	}
	initRes = 3 // CUDA_ERROR_NOT_INITIALIZED
	if _, err := DeviceCount(); err == nil || errors.Is(err, ErrNoDevice) || !strings.Contains(err.Error(), "failed to initialise") {
		t.Errorf("cuInit failing: %v", err)
	}
}
