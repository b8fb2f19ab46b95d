package buffer

// DefaultPath is where the buffer lives when nothing else is configured.
const DefaultPath = "./data"

// Config is the `buffer:` block.
type Config struct {
	// Path is the directory that holds the buffer's files.
	Path string `yaml:"path,omitempty"`
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.Path == "" {
		c.Path = DefaultPath
	}
}
