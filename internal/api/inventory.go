package api

import (
	"context"
	"encoding/base64"
	"log/slog"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/grpc"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/firmware"
	"github.com/flasher-dev/flasher/internal/fleet"
	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/task"
)

// InventoryConfig configures the InventoryService.
type InventoryConfig struct {
	Source inventory.Source
	// Collector runs CollectInventory; nil answers Unimplemented.
	Collector *fleet.Collector
	Logger    *slog.Logger
}

// InventoryService implements flasherv1.InventoryServiceServer: a read-only view of what
// Flasher sees. It never returns credentials.
type InventoryService struct {
	flasherv1.UnimplementedInventoryServiceServer
	cfg InventoryConfig
	log *slog.Logger
}

var _ flasherv1.InventoryServiceServer = (*InventoryService)(nil)

// NewInventoryService returns the InventoryService.
func NewInventoryService(cfg InventoryConfig) *InventoryService {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &InventoryService{cfg: cfg, log: cfg.Logger.With("part", "api")}
}

// Register registers the service.
func (s *InventoryService) Register(r grpc.ServiceRegistrar) {
	flasherv1.RegisterInventoryServiceServer(r, s)
}

func serverToPB(srv *inventory.Server, components bool) *flasherv1.Server {
	out := &flasherv1.Server{
		Id: srv.ID, Name: srv.Name, Facility: srv.Facility, Vendor: srv.Vendor, Model: srv.Model,
		Serial: srv.Serial, BmcAddress: srv.BMC.Address, BmcInsecureSkipVerify: srv.BMC.InsecureSkipVerify,
	}
	if components {
		for _, c := range srv.Components {
			out.Components = append(out.Components, &flasherv1.Component{
				Slug: c.Slug, Vendor: c.Vendor, Model: c.Model, Serial: c.Serial, Version: c.Version,
				InBand: c.InBand, OutOfBand: c.OutOfBand,
				VersionSource: versionSourceToPB(c.VersionSource), VersionObservedAt: optionalTime(c.VersionAt),
			})
		}
	}
	return out
}

// ListServers lists servers, ordered by id, paged by an opaque offset token.
func (s *InventoryService) ListServers(ctx context.Context, req *flasherv1.ListServersRequest) (*flasherv1.ListServersResponse, error) {
	servers, err := s.cfg.Source.Servers(ctx)
	if err != nil {
		return nil, errorStatus(ctx, s.log, err)
	}
	offset := 0
	if tok := req.GetPageToken(); tok != "" {
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		n, perr := strconv.Atoi(strings.TrimPrefix(string(raw), "servers:"))
		if err != nil || perr != nil || n < 0 || !strings.HasPrefix(string(raw), "servers:") {
			return nil, badRequest("page_token", "not a page token this server issued")
		}
		offset = n
	}
	size := int(req.GetPageSize())
	if size == 0 {
		size = 100
	}
	out := &flasherv1.ListServersResponse{}
	i := offset
	for ; i < len(servers) && len(out.Servers) < size; i++ {
		srv := servers[i]
		if req.GetVendor() != "" && firmware.NormalizeVendor(srv.Vendor) != firmware.NormalizeVendor(req.GetVendor()) {
			continue
		}
		if req.GetModel() != "" && firmware.NormalizeModel(srv.Model) != firmware.NormalizeModel(req.GetModel()) {
			continue
		}
		out.Servers = append(out.Servers, serverToPB(srv, req.GetIncludeComponents()))
	}
	if i < len(servers) {
		out.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte("servers:" + strconv.Itoa(i)))
	}
	return out, nil
}

// GetServer returns one server with its components.
func (s *InventoryService) GetServer(ctx context.Context, req *flasherv1.GetServerRequest) (*flasherv1.GetServerResponse, error) {
	srv, err := s.cfg.Source.Server(ctx, req.GetId())
	if err != nil {
		return nil, errorStatus(ctx, s.log, err)
	}
	return &flasherv1.GetServerResponse{Server: serverToPB(srv, true)}, nil
}

// ListFirmware lists the catalog, filtered by vendor, model and component.
func (s *InventoryService) ListFirmware(ctx context.Context, req *flasherv1.ListFirmwareRequest) (*flasherv1.ListFirmwareResponse, error) {
	cat, err := s.cfg.Source.Catalog(ctx)
	if err != nil {
		return nil, errorStatus(ctx, s.log, err)
	}
	out := &flasherv1.ListFirmwareResponse{}
	for _, f := range cat.Firmware {
		if req.GetVendor() != "" && firmware.NormalizeVendor(f.Vendor) != firmware.NormalizeVendor(req.GetVendor()) {
			continue
		}
		if req.GetComponent() != "" && firmware.NormalizeSlug(f.Component) != firmware.NormalizeSlug(req.GetComponent()) {
			continue
		}
		if m := req.GetModel(); m != "" && !containsModel(f.Models, m) {
			continue
		}
		rec := &flasherv1.FirmwareRecord{
			Id: f.ID, Vendor: f.Vendor, Models: f.Models, Component: f.Component, Version: f.Version,
			VersionScheme: f.Scheme, Filename: f.Filename, Url: f.URL, Checksum: f.Checksum,
			Method: methodToPB[task.MethodOutOfBand], After: f.After, Tag: f.Tag,
		}
		if f.InBand {
			rec.Method = methodToPB[task.MethodInBand]
		}
		for _, r := range f.Requires {
			rec.Requires = append(rec.Requires, &flasherv1.FirmwareRequirement{Component: r.Component, Constraint: r.Constraint})
		}
		out.Firmware = append(out.Firmware, rec)
	}
	return out, nil
}

func containsModel(models []string, m string) bool {
	for _, x := range models {
		if firmware.NormalizeModel(x) == firmware.NormalizeModel(m) {
			return true
		}
	}
	return false
}

// ListFirmwareSets lists firmware sets, ordered by id.
func (s *InventoryService) ListFirmwareSets(ctx context.Context, _ *flasherv1.ListFirmwareSetsRequest) (*flasherv1.ListFirmwareSetsResponse, error) {
	cat, err := s.cfg.Source.Catalog(ctx)
	if err != nil {
		return nil, errorStatus(ctx, s.log, err)
	}
	out := &flasherv1.ListFirmwareSetsResponse{}
	for _, set := range cat.Sets {
		out.FirmwareSets = append(out.FirmwareSets, &flasherv1.FirmwareSet{Id: set.ID, Name: set.Name, Labels: set.Labels, FirmwareIds: set.Firmware})
	}
	sort.Slice(out.FirmwareSets, func(i, j int) bool { return out.FirmwareSets[i].Id < out.FirmwareSets[j].Id })
	return out, nil
}
