package file

// The YAML document format of the embedded inventory. One file, or several in a directory, each
// holding any of the sections; a directory is merged in file-name order. Unknown fields are
// rejected. Documented in docs/inventory.md.

// Document is one inventory file.
type Document struct {
	Servers      []ServerDoc              `yaml:"servers,omitempty"`
	Credentials  map[string]CredentialDoc `yaml:"credentials,omitempty"`
	Firmware     []FirmwareDoc            `yaml:"firmware,omitempty"`
	FirmwareSets []FirmwareSetDoc         `yaml:"firmware_sets,omitempty"`
}

// ServerDoc is one server.
type ServerDoc struct {
	ID       string `yaml:"id"`
	Name     string `yaml:"name,omitempty"`
	Facility string `yaml:"facility,omitempty"`
	Vendor   string `yaml:"vendor"`
	Model    string `yaml:"model"`
	Serial   string `yaml:"serial,omitempty"`
	// Labels are free-form (site, rack, ...): rollouts select and group servers by them.
	Labels     map[string]string `yaml:"labels,omitempty"`
	BMC        BMCDoc            `yaml:"bmc"`
	Components []ComponentDoc    `yaml:"components,omitempty"`
}

// BMCDoc is how to reach the server's BMC.
type BMCDoc struct {
	Address            string `yaml:"address"`
	Credentials        string `yaml:"credentials"` // key into the credentials section
	CAFile             string `yaml:"ca_file,omitempty"`
	Fingerprint        string `yaml:"fingerprint,omitempty"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify,omitempty"`
	// UpdatePath overrides the out-of-band update path chosen by vendor and model: bmclib or
	// redfish-update.
	UpdatePath string `yaml:"update_path,omitempty"`
}

// CredentialDoc is a BMC username and password; PasswordFile reads the password from a file
// instead, so the inventory itself can be shared without secrets.
type CredentialDoc struct {
	Username     string `yaml:"username"`
	Password     string `yaml:"password,omitempty"`
	PasswordFile string `yaml:"password_file,omitempty"`
}

// ComponentDoc is one component instance.
type ComponentDoc struct {
	Slug      string `yaml:"slug"`
	Vendor    string `yaml:"vendor,omitempty"`
	Model     string `yaml:"model,omitempty"`
	Serial    string `yaml:"serial,omitempty"`
	Version   string `yaml:"version"`
	InBand    bool   `yaml:"inband,omitempty"`
	OutOfBand bool   `yaml:"outofband,omitempty"`
}

// FirmwareDoc is one catalog record.
type FirmwareDoc struct {
	ID        string           `yaml:"id"`
	Vendor    string           `yaml:"vendor"`
	Models    []string         `yaml:"models,omitempty"`
	Component string           `yaml:"component"`
	Version   string           `yaml:"version"`
	Scheme    string           `yaml:"scheme"`
	Filename  string           `yaml:"filename,omitempty"`
	URL       string           `yaml:"url"`
	Checksum  string           `yaml:"checksum"`
	Method    string           `yaml:"method"` // "out-of-band" or "in-band"
	Requires  []RequirementDoc `yaml:"requires,omitempty"`
	After     []string         `yaml:"after,omitempty"`
	Tag       string           `yaml:"tag,omitempty"`
}

// RequirementDoc is one requirement of a firmware record.
type RequirementDoc struct {
	Component  string `yaml:"component"`
	Constraint string `yaml:"constraint"` // ">=2.0"
}

// FirmwareSetDoc is one firmware set.
type FirmwareSetDoc struct {
	ID       string            `yaml:"id"`
	Name     string            `yaml:"name"`
	Labels   map[string]string `yaml:"labels,omitempty"`
	Firmware []string          `yaml:"firmware"`
}
