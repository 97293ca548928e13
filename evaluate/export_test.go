package evaluate

// RandomUtterance is randomUtterance for the external tests.
var RandomUtterance = randomUtterance
