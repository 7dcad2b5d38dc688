package redfish

import "fmt"

// ids are the Redfish resource ids of a personality. bmclib's inventory only looks at a few
// hard-coded ids (redfishwrapper/inventory.go), so these are the ones real machines use.
type ids struct {
	system, manager, chassis, storage string
	uploadURI                         string
	managerResetTypes                 []string
	managerModel                      string
}

var (
	dellIDs = ids{
		system: "System.Embedded.1", manager: "iDRAC.Embedded.1", chassis: "System.Embedded.1",
		storage:           "RAID.Integrated.1-1",
		uploadURI:         "/redfish/v1/UpdateService/MultipartUpload",
		managerResetTypes: []string{"GracefulRestart"},
		managerModel:      "14G Monolithic",
	}
	openbmcIDs = ids{
		system: "system", manager: "bmc", chassis: "chassis", storage: "1",
		uploadURI:         "/redfish/v1/UpdateService/update",
		managerResetTypes: []string{"GracefulRestart", "ForceRestart"},
		managerModel:      "OpenBMC",
	}
	systemResetTypes = []string{"On", "ForceOff", "ForceOn", "ForceRestart", "GracefulRestart", "GracefulShutdown", "PowerCycle", "Nmi"}
)

func idsFor(p Personality) ids {
	switch {
	case p == Dell:
		return dellIDs
	case p.supermicro():
		return smcIDs
	case p == HPE:
		return hpeIDs
	case p == XCC:
		return xccIDs
	case p == DMTF:
		return dmtfIDs
	}
	return openbmcIDs
}

func (x ids) componentID(slug string, n int) string {
	dell := x.system == dellIDs.system
	switch slug {
	case SlugBMC:
		return x.manager
	case SlugBIOS:
		if dell {
			return "BIOS.Setup.1-1"
		}
		return "bios"
	case SlugNIC:
		if dell {
			if n == 0 {
				return "NIC.Integrated.1"
			}
			return fmt.Sprintf("NIC.Slot.%d", n)
		}
		return fmt.Sprintf("nic%d", n)
	case SlugDrive:
		if dell {
			return fmt.Sprintf("Disk.Bay.%d:Enclosure.Internal.0-1", n)
		}
		return fmt.Sprintf("drive%d", n)
	}
	return fmt.Sprintf("%s%d", slug, n)
}
