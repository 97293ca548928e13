package train

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/wavecat/wavecat/internal/atomicfile"
)

// TrainRecord is one metrics.jsonl line of training progress, averaged over
// the steps since the previous record (loss) or measured over them (speed).
type TrainRecord struct {
	Type          string    `json:"type"` // "train"
	Step          int64     `json:"step"`
	Loss          float64   `json:"loss"` // mean per-sample training loss, nats
	LR            float64   `json:"lr"`
	StepsPerSec   float64   `json:"steps_per_s"`
	SamplesPerSec float64   `json:"samples_per_s"`
	GradNorm      float64   `json:"grad_norm"` // of the record's last step, before clipping
	Time          time.Time `json:"time"`
}

// metricsLog appends JSON lines to metrics.jsonl. Appending (rather than
// rewriting atomically on every record) keeps a long run's cost linear; the
// file is fsynced at each checkpoint, and on resume it is rewritten
// atomically without the records past the checkpoint, so a crash never
// leaves the log ahead of the state it describes.
type metricsLog struct {
	path  string
	f     *os.File
	train []TrainRecord
	eval  []EvalRecord
}

// openMetrics opens path for appending. A fresh run truncates it; a resumed
// run keeps (and re-reads, for the plot) the records up to step.
func openMetrics(path string, step int64, resume bool) (*metricsLog, error) {
	ml := &metricsLog{path: path}
	var keep bytes.Buffer
	if resume {
		data, err := os.ReadFile(path)
		if err != nil && !os.IsNotExist(err) {
			return nil, fmt.Errorf("train: metrics: %w", err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for line := 1; sc.Scan(); line++ {
			var probe struct {
				Type string `json:"type"`
				Step int64  `json:"step"`
			}
			if err := json.Unmarshal(sc.Bytes(), &probe); err != nil {
				// A torn last line after a hard kill: dropped.
				continue
			}
			if probe.Step > step {
				continue
			}
			switch probe.Type {
			case "train":
				var r TrainRecord
				if json.Unmarshal(sc.Bytes(), &r) == nil {
					ml.train = append(ml.train, r)
				}
			case "eval":
				var r EvalRecord
				if json.Unmarshal(sc.Bytes(), &r) == nil {
					ml.eval = append(ml.eval, r)
				}
			}
			keep.Write(sc.Bytes())
			keep.WriteByte('\n')
		}
	}
	if err := atomicfile.WriteBytes(path, keep.Bytes(), 0o644); err != nil {
		return nil, fmt.Errorf("train: metrics: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return nil, fmt.Errorf("train: metrics: %w", err)
	}
	ml.f = f
	return ml, nil
}

func (ml *metricsLog) write(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("train: metrics: %w", err)
	}
	if _, err := ml.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("train: writing %s: %w", ml.path, err)
	}
	return nil
}

// Train appends a training record.
func (ml *metricsLog) Train(r TrainRecord) error {
	ml.train = append(ml.train, r)
	return ml.write(r)
}

// Eval appends a validation record.
func (ml *metricsLog) Eval(r EvalRecord) error {
	ml.eval = append(ml.eval, r)
	return ml.write(r)
}

// Flush makes the records so far durable.
func (ml *metricsLog) Flush() error {
	if ml == nil || ml.f == nil {
		return nil
	}
	if err := ml.f.Sync(); err != nil {
		return fmt.Errorf("train: syncing %s: %w", ml.path, err)
	}
	return nil
}

// Close closes the file.
func (ml *metricsLog) Close() error {
	if ml == nil || ml.f == nil {
		return nil
	}
	err := ml.f.Close()
	ml.f = nil
	return err
}

// ReadMetrics reads a run's metrics.jsonl (for plots and reports).
func ReadMetrics(path string) ([]TrainRecord, []EvalRecord, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var tr []TrainRecord
	var ev []EvalRecord
	for i, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var probe struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(line, &probe); err != nil {
			return nil, nil, fmt.Errorf("%s:%d: %w", path, i+1, err)
		}
		switch probe.Type {
		case "train":
			var r TrainRecord
			if err := json.Unmarshal(line, &r); err != nil {
				return nil, nil, fmt.Errorf("%s:%d: %w", path, i+1, err)
			}
			tr = append(tr, r)
		case "eval":
			var r EvalRecord
			if err := json.Unmarshal(line, &r); err != nil {
				return nil, nil, fmt.Errorf("%s:%d: %w", path, i+1, err)
			}
			ev = append(ev, r)
		default:
			return nil, nil, fmt.Errorf("%s:%d: unknown record type %q", path, i+1, probe.Type)
		}
	}
	return tr, ev, nil
}
