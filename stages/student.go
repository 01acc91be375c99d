package stages

// StudentConfig is the student section.
type StudentConfig struct{}

// DefaultStudentConfig returns the student section's defaults.
func DefaultStudentConfig() StudentConfig { return StudentConfig{} }

// Validate names the first bad field.
func (c *StudentConfig) Validate() error { return nil }
