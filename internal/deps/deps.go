// Package deps pins the third-party modules the project builds on until the
// packages that use them exist; delete an import here once a real package imports it.
package deps

import (
	_ "codeberg.org/sbinet/npyio"
	_ "github.com/ebitengine/purego"
	_ "github.com/go-audio/wav"
	_ "github.com/spf13/cobra"
	_ "gonum.org/v1/gonum/blas/blas32"
	_ "gonum.org/v1/gonum/dsp/fourier"
	_ "gonum.org/v1/plot"
)
