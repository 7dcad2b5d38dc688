package fleetdb

import (
	"strings"

	"github.com/google/uuid"
	fleetdbapi "github.com/metal-toolbox/fleetdb/pkg/api/v1"

	"github.com/flasher-dev/flasher/internal/inventory/file"
)

// Flasher component slugs to fleetdb component type slugs (bmc-common names through
// gosimple/slug, as fleetdb stores them).
var toFleetdbSlug = map[string]string{
	"bmc": "bmc", "bios": "bios", "cpld": "cpld", "nic": "nic", "drive": "drive",
	"storagecontroller": "storagecontroller", "psu": "power-supply", "tpm": "tpm", "gpu": "gpu",
	"cpu": "cpu", "backplane": "backplane-expander", "mainboard": "mainboard",
}

// FleetdbSlug returns fleetdb's component type slug for a Flasher slug ("StorageController" →
// "storagecontroller", "PSU" → "power-supply"); unknown slugs are lowercased.
func FleetdbSlug(slug string) string {
	k := strings.ToLower(strings.NewReplacer("-", "", "_", "", " ", "").Replace(slug))
	if s, ok := toFleetdbSlug[k]; ok {
		return s
	}
	return strings.ToLower(slug)
}

// SeedDocument loads an embedded-inventory document (the one flasher-sim writes for its fleet)
// into the simulator, so the same fleet and catalog can be served as fleetdb. Server,
// firmware and set ids become UUIDs derived with ServerUUID, FirmwareUUID and SetUUID; the
// server id is kept as the name when the document has none. Fields fleetdb cannot hold
// (version schemes, requirements, order hints, tags, TLS settings) are dropped; the method
// becomes install_inband. Credentials referenced by a server are stored as its "bmc" credential.
// It returns the server UUIDs by document id.
func (s *Server) SeedDocument(doc file.Document) map[string]uuid.UUID {
	ids := map[string]uuid.UUID{}
	for _, sd := range doc.Servers {
		name := sd.Name
		if name == "" {
			name = sd.ID
		}
		seed := ServerSeed{
			ID: ServerUUID(sd.ID), Name: name, Facility: sd.Facility, Vendor: sd.Vendor, Model: sd.Model,
			Serial: sd.Serial, BMCAddress: sd.BMC.Address,
		}
		if c, ok := doc.Credentials[sd.BMC.Credentials]; ok {
			seed.Username, seed.Password = c.Username, c.Password
		}
		for _, c := range sd.Components {
			seed.Components = append(seed.Components, ComponentSeed{
				Slug: FleetdbSlug(c.Slug), Vendor: c.Vendor, Model: c.Model, Serial: c.Serial, Installed: c.Version,
			})
		}
		ids[sd.ID] = s.AddServer(seed)
	}
	for _, fd := range doc.Firmware {
		inband := fd.Method == "in-band"
		oem := false
		s.AddFirmware(fleetdbapi.ComponentFirmwareVersion{
			UUID: FirmwareUUID(fd.ID), Vendor: strings.ToLower(fd.Vendor), Model: fd.Models, Filename: fd.Filename,
			Version: fd.Version, Component: FleetdbSlug(fd.Component), Checksum: fd.Checksum,
			UpstreamURL: fd.URL, RepositoryURL: fd.URL, InstallInband: &inband, OEM: &oem,
		})
	}
	for _, sd := range doc.FirmwareSets {
		var members []uuid.UUID
		for _, id := range sd.Firmware {
			members = append(members, FirmwareUUID(id))
		}
		labels := map[string]string{}
		for k, v := range sd.Labels {
			labels[k] = strings.ToLower(v)
		}
		s.AddFirmwareSet(SetUUID(sd.ID), sd.Name, labels, members...)
	}
	return ids
}
