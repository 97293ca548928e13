package train

import (
	"fmt"
	"math"
)

// Schedule gives the learning rate at each step. Kind "step" is r9y9's step
// decay lr = Init * Gamma^floor(step/StepSize); "constant" is Init always.
type Schedule struct {
	Kind     string  `json:"kind"`
	Init     float64 `json:"init"`
	Gamma    float64 `json:"gamma,omitempty"`
	StepSize int64   `json:"step_size,omitempty"`
}

// DefaultSchedule is r9y9's: 1e-3, halved every 200k steps.
func DefaultSchedule() Schedule { return StepDecay(1e-3, 0.5, 200000) }

// StepDecay returns a step-decay schedule.
func StepDecay(init, gamma float64, stepSize int64) Schedule {
	return Schedule{Kind: "step", Init: init, Gamma: gamma, StepSize: stepSize}
}

// Constant returns a constant schedule.
func Constant(lr float64) Schedule { return Schedule{Kind: "constant", Init: lr} }

// Validate checks the fields for the kind.
func (s Schedule) Validate() error {
	if !(s.Init > 0) || math.IsInf(s.Init, 0) {
		return fmt.Errorf("schedule: initial learning rate %g must be positive and finite", s.Init)
	}
	switch s.Kind {
	case "constant":
	case "step":
		if !(s.Gamma > 0 && s.Gamma <= 1) {
			return fmt.Errorf("schedule: gamma %g must be in (0, 1]", s.Gamma)
		}
		if s.StepSize <= 0 {
			return fmt.Errorf("schedule: step_size %d must be positive", s.StepSize)
		}
	default:
		return fmt.Errorf("schedule: unknown kind %q (want step or constant)", s.Kind)
	}
	return nil
}

// LR is the learning rate for the update made when step updates have
// already been completed (0-based, as r9y9's global_step). The power is taken
// in float64 so the halvings are exact.
func (s Schedule) LR(step int64) float32 {
	if s.Kind == "step" && s.StepSize > 0 && step > 0 {
		return float32(s.Init * math.Pow(s.Gamma, float64(step/s.StepSize)))
	}
	return float32(s.Init)
}
