package fleetdb

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/google/uuid"
	fleetdbapi "github.com/metal-toolbox/fleetdb/pkg/api/v1"
)

// ServerSeed is a server described in Flasher's terms; AddServer stores it the way fleetdb's
// inventory collectors do (vendor attributes, BMC info, components with a firmware versioned
// attribute, BMC credentials).
type ServerSeed struct {
	// ID is the server UUID; zero means ServerUUID(Name).
	ID         uuid.UUID
	Name       string
	Facility   string
	Vendor     string
	Model      string
	Serial     string
	BMCAddress string
	// Username and Password are stored as the "bmc" credential when Username is set.
	Username, Password string
	Components         []ComponentSeed
}

// ComponentSeed is one component of a ServerSeed.
type ComponentSeed struct {
	// ID is the component UUID; zero means one derived from the server, slug and serial.
	ID uuid.UUID
	// Slug is fleetdb's component type slug: "bmc", "bios", "cpld", "nic", "drive",
	// "storagecontroller", "power-supply", ...
	Slug   string
	Vendor string
	Model  string
	Serial string
	// Installed is the installed firmware version; empty records none.
	Installed string
	// InBand records the version under the in-band firmware namespace instead.
	InBand bool
}

// ServerUUID derives a stable server UUID from a name, so a fleet seeded twice has the same ids.
func ServerUUID(name string) uuid.UUID {
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte("fleetdb-sim/server/"+name))
}

// FirmwareUUID derives a stable firmware UUID from a catalog id.
func FirmwareUUID(id string) uuid.UUID {
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte("fleetdb-sim/firmware/"+id))
}

// SetUUID derives a stable firmware set UUID from a set id.
func SetUUID(id string) uuid.UUID {
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte("fleetdb-sim/firmware-set/"+id))
}

// componentTypeName is fleetdb's type name for a slug (bmc-common's names).
var componentTypeName = map[string]string{
	"bmc": "BMC", "bios": "BIOS", "cpld": "CPLD", "nic": "NIC", "drive": "Drive",
	"storagecontroller": "StorageController", "power-supply": "Power-Supply", "tpm": "TPM",
	"gpu": "GPU", "cpu": "CPU", "backplane-expander": "Backplane-Expander", "mainboard": "Mainboard",
	"nvme-pcie-ssd": "NVMe-PCIe-SSD", "sata-ssd": "Sata-SSD", "sata-hdd": "Sata-HDD",
	"physicalmemory": "PhysicalMemory", "chassis": "Chassis", "enclosure": "Enclosure",
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("fleetdb sim: marshal %T: %v", v, err))
	}
	return b
}

// AddServer stores a server and returns its UUID. An existing server with that UUID is replaced.
func (s *Server) AddServer(seed ServerSeed) uuid.UUID {
	id := seed.ID
	if id == uuid.Nil {
		id = ServerUUID(seed.Name)
	}
	now := s.cfg.Now().UTC()
	raw := fleetdbapi.Server{UUID: id, Name: seed.Name, FacilityCode: seed.Facility, CreatedAt: now, UpdatedAt: now}
	raw.Attributes = append(raw.Attributes, fleetdbapi.Attributes{
		Namespace: NSVendor, CreatedAt: now, UpdatedAt: now,
		Data: mustJSON(map[string]string{"vendor": seed.Vendor, "model": seed.Model, "serial": seed.Serial}),
	})
	if seed.BMCAddress != "" {
		raw.Attributes = append(raw.Attributes, fleetdbapi.Attributes{
			Namespace: NSBMC, CreatedAt: now, UpdatedAt: now,
			Data: mustJSON(map[string]string{"address": seed.BMCAddress}),
		})
	}
	for _, c := range seed.Components {
		cid := c.ID
		if cid == uuid.Nil {
			cid = uuid.NewSHA1(id, []byte(c.Slug+"/"+c.Serial))
		}
		slug := strings.ToLower(c.Slug)
		name := componentTypeName[slug]
		if name == "" {
			name = c.Slug
		}
		sc := fleetdbapi.ServerComponent{
			UUID: cid, ServerUUID: id, Name: name, Vendor: c.Vendor, Model: c.Model, Serial: c.Serial,
			ComponentTypeID: componentTypeID(slug), ComponentTypeName: name, ComponentTypeSlug: slug,
			CreatedAt: now, UpdatedAt: now,
		}
		if c.Installed != "" {
			ns := NSFirmwareOutOfBand
			if c.InBand {
				ns = NSFirmwareInBand
			}
			sc.VersionedAttributes = []fleetdbapi.VersionedAttributes{{
				Namespace: ns, Data: mustJSON(map[string]string{"installed": c.Installed}),
				Tally: 1, CreatedAt: now, LastReportedAt: now,
			}}
		}
		raw.Components = append(raw.Components, sc)
	}
	s.AddRawServer(raw)
	if seed.Username != "" {
		s.SetCredential(id, CredentialBMC, seed.Username, seed.Password)
	}
	return id
}

// AddRawServer stores a server exactly as given, with its attributes, versioned attributes and
// components (each with theirs): the way to seed the messy data real fleetdb holds
// (duplicated components, empty vendors, odd slugs, attributes that are not JSON objects).
func (s *Server) AddRawServer(raw fleetdbapi.Server) {
	srv := &server{Attrs: raw.Attributes, VAttrs: raw.VersionedAttributes, Credentials: map[string]fleetdbapi.ServerCredential{}}
	for _, c := range raw.Components {
		c.ServerUUID = raw.UUID
		comp := &component{Attrs: c.Attributes, VAttrs: c.VersionedAttributes}
		c.Attributes, c.VersionedAttributes = nil, nil
		comp.Rec = c
		srv.Components = append(srv.Components, comp)
	}
	raw.Attributes, raw.VersionedAttributes, raw.Components = nil, nil, nil
	srv.Rec = raw
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.st.byID[raw.UUID]; ok {
		srv.Credentials = old.Credentials
		for i, x := range s.st.Servers {
			if x == old {
				s.st.Servers[i] = srv
			}
		}
	} else {
		s.st.insertServer(srv)
	}
	s.st.byID[raw.UUID] = srv
	_ = s.save()
}

// SetCredential stores a credential of a server under a slug ("bmc").
func (s *Server) SetCredential(id uuid.UUID, slug, username, password string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	srv, ok := s.st.byID[id]
	if !ok {
		return
	}
	now := s.cfg.Now().UTC()
	c := fleetdbapi.ServerCredential{ServerID: id, SecretType: slug, Username: username, Password: password, CreatedAt: now, UpdatedAt: now}
	if old, ok := srv.Credentials[slug]; ok {
		c.CreatedAt = old.CreatedAt
	}
	srv.Credentials[slug] = c
	_ = s.save()
}

// AddFirmware stores a firmware record as given (InstallInband and OEM may be nil, as messy
// data has them) and returns its UUID; a zero UUID gets a random one.
func (s *Server) AddFirmware(fw fleetdbapi.ComponentFirmwareVersion) uuid.UUID {
	if fw.UUID == uuid.Nil {
		fw.UUID = uuid.New()
	}
	if fw.CreatedAt.IsZero() {
		fw.CreatedAt = s.cfg.Now().UTC()
		fw.UpdatedAt = fw.CreatedAt
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.st.fwByID[fw.UUID]; ok {
		*old = fw
	} else {
		p := &fw
		s.st.Firmware = append(s.st.Firmware, p)
		s.st.fwByID[fw.UUID] = p
	}
	_ = s.save()
	return fw.UUID
}

// AddFirmwareSet stores a firmware set with labels (the sh.hollow.firmware_set.labels
// attribute) and member firmware, and returns its UUID; a zero id gets a random one.
func (s *Server) AddFirmwareSet(id uuid.UUID, name string, labels map[string]string, firmware ...uuid.UUID) uuid.UUID {
	now := s.cfg.Now().UTC()
	rec := fleetdbapi.ComponentFirmwareSet{UUID: id, Name: name, CreatedAt: now, UpdatedAt: now}
	if labels != nil {
		rec.Attributes = []fleetdbapi.Attributes{{Namespace: NSFirmwareSetLabels, Data: mustJSON(labels), CreatedAt: now, UpdatedAt: now}}
	}
	return s.AddRawFirmwareSet(rec, firmware...)
}

// AddRawFirmwareSet stores a firmware set with attributes exactly as given.
func (s *Server) AddRawFirmwareSet(rec fleetdbapi.ComponentFirmwareSet, firmware ...uuid.UUID) uuid.UUID {
	if rec.UUID == uuid.Nil {
		rec.UUID = uuid.New()
	}
	rec.ComponentFirmware = nil
	fs := &firmwareSet{Rec: rec, Firmware: firmware}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.st.setByID[rec.UUID]; ok {
		*old = *fs
	} else {
		s.st.Sets = append(s.st.Sets, fs)
		s.st.setByID[rec.UUID] = fs
	}
	_ = s.save()
	return rec.UUID
}

// SetAttribute creates or replaces a server attribute as a POST or PUT through the API would
// (see putAttr for the timestamps); data is marshalled unless it is already a
// json.RawMessage. It reports false when the server does not exist.
func (s *Server) SetAttribute(id uuid.UUID, ns string, data any) bool {
	raw, ok := data.(json.RawMessage)
	if !ok {
		raw = mustJSON(data)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	srv, ok := s.st.byID[id]
	if !ok {
		return false
	}
	s.putAttr(srv, ns, raw)
	_ = s.save()
	return true
}

// putAttr upserts an attribute the way fleetdb v1.20.3 does; the caller holds s.mu. An update
// (PUT) replaces only the data: the attribute's created_at and updated_at stay as they were,
// and the server's updated_at is set instead. A create (POST) stamps the new attribute and
// leaves the server's updated_at alone.
func (s *Server) putAttr(srv *server, ns string, raw json.RawMessage) {
	now := s.cfg.Now().UTC()
	if i := findAttr(srv.Attrs, ns); i >= 0 {
		srv.Attrs[i].Data = raw
		srv.Rec.UpdatedAt = now
		return
	}
	srv.Attrs = append(srv.Attrs, fleetdbapi.Attributes{Namespace: ns, Data: raw, CreatedAt: now, UpdatedAt: now})
}

// Attribute returns a server attribute.
func (s *Server) Attribute(id uuid.UUID, ns string) (fleetdbapi.Attributes, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	srv, ok := s.st.byID[id]
	if !ok {
		return fleetdbapi.Attributes{}, false
	}
	if i := findAttr(srv.Attrs, ns); i >= 0 {
		return srv.Attrs[i], true
	}
	return fleetdbapi.Attributes{}, false
}

// InstalledVersion returns the newest installed firmware recorded for the first component of a
// server with the given type slug (either firmware namespace), as a test would check it.
func (s *Server) InstalledVersion(id uuid.UUID, slug string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	srv, ok := s.st.byID[id]
	if !ok {
		return "", false
	}
	for _, c := range srv.Components {
		if !strings.EqualFold(c.Rec.ComponentTypeSlug, slug) {
			continue
		}
		var best *fleetdbapi.VersionedAttributes
		for i, va := range c.VAttrs {
			if va.Namespace != NSFirmwareOutOfBand && va.Namespace != NSFirmwareInBand {
				continue
			}
			if best == nil || !va.CreatedAt.Before(best.CreatedAt) {
				best = &c.VAttrs[i]
			}
		}
		if best == nil {
			return "", false
		}
		var fw struct {
			Installed string `json:"installed"`
		}
		if json.Unmarshal(best.Data, &fw) != nil {
			return "", false
		}
		return fw.Installed, true
	}
	return "", false
}

// ServerCount is the number of stored servers.
func (s *Server) ServerCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.st.Servers)
}
