package api

import (
	"context"
	"encoding/base64"
	"log/slog"
	"sort"
	"strings"

	"google.golang.org/grpc"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/fleet"
)

// ComplianceConfig configures the ComplianceService.
type ComplianceConfig struct {
	Fleet  *fleet.Fleet
	Logger *slog.Logger
}

// ComplianceService implements flasherv1.ComplianceServiceServer over internal/fleet.
type ComplianceService struct {
	flasherv1.UnimplementedComplianceServiceServer
	cfg ComplianceConfig
	log *slog.Logger
}

var _ flasherv1.ComplianceServiceServer = (*ComplianceService)(nil)

// NewComplianceService returns the ComplianceService.
func NewComplianceService(cfg ComplianceConfig) *ComplianceService {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &ComplianceService{cfg: cfg, log: cfg.Logger.With("part", "api")}
}

// Register registers the service.
func (s *ComplianceService) Register(r grpc.ServiceRegistrar) {
	flasherv1.RegisterComplianceServiceServer(r, s)
}

const compliancePagePrefix = "compliance:"

// ListCompliance answers per server, in id order; only the page's servers are planned.
func (s *ComplianceService) ListCompliance(ctx context.Context, req *flasherv1.ListComplianceRequest) (*flasherv1.ListComplianceResponse, error) {
	sel := selectorFromPB(req.GetSelector())
	after := ""
	if tok := req.GetPageToken(); tok != "" {
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || !strings.HasPrefix(string(raw), compliancePagePrefix) {
			return nil, badRequest("page_token", "not a page token this server issued")
		}
		after = strings.TrimPrefix(string(raw), compliancePagePrefix)
	}
	size := int(req.GetPageSize())
	if size == 0 {
		size = 100
	}
	res, next, err := s.cfg.Fleet.CompliancePage(ctx, fleet.ComplianceRequest{Selector: sel, FirmwareSet: req.GetFirmwareSet()}, after, size)
	if err != nil {
		return nil, errorStatus(ctx, s.log, err)
	}
	out := &flasherv1.ListComplianceResponse{}
	for _, r := range res {
		out.Servers = append(out.Servers, serverComplianceToPB(r))
	}
	if next != "" {
		out.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(compliancePagePrefix + next))
	}
	return out, nil
}

// SummarizeCompliance counts the selected servers by set and status.
func (s *ComplianceService) SummarizeCompliance(ctx context.Context, req *flasherv1.SummarizeComplianceRequest) (*flasherv1.SummarizeComplianceResponse, error) {
	res, err := s.cfg.Fleet.Compliance(ctx, fleet.ComplianceRequest{Selector: selectorFromPB(req.GetSelector()), FirmwareSet: req.GetFirmwareSet()})
	if err != nil {
		return nil, errorStatus(ctx, s.log, err)
	}
	sum := fleet.Summarize(res)
	out := &flasherv1.SummarizeComplianceResponse{Servers: int32(sum.Servers)}
	sets := make([]string, 0, len(sum.Counts))
	for set := range sum.Counts {
		sets = append(sets, set)
	}
	sort.Strings(sets)
	for _, set := range sets {
		for _, st := range fleet.Statuses {
			if n := sum.Counts[set][st]; n > 0 {
				out.Counts = append(out.Counts, &flasherv1.ComplianceCount{FirmwareSet: set, Status: complianceStatusToPB[st], Servers: int32(n)})
			}
		}
	}
	sort.SliceStable(out.Counts, func(i, j int) bool {
		a, b := out.Counts[i], out.Counts[j]
		if a.FirmwareSet != b.FirmwareSet {
			return a.FirmwareSet < b.FirmwareSet
		}
		return a.Status < b.Status
	})
	return out, nil
}

func selectorFromPB(s *flasherv1.ServerSelector) fleet.Selector {
	return fleet.Selector{ServerIDs: s.GetServerIds(), Labels: s.GetLabels(), All: s.GetAll()}
}

var complianceStatusToPB = map[fleet.Status]flasherv1.ComplianceStatus{
	fleet.StatusCompliant: flasherv1.ComplianceStatus_COMPLIANCE_STATUS_COMPLIANT,
	fleet.StatusOutdated:  flasherv1.ComplianceStatus_COMPLIANCE_STATUS_OUTDATED,
	fleet.StatusAhead:     flasherv1.ComplianceStatus_COMPLIANCE_STATUS_AHEAD,
	fleet.StatusUnknown:   flasherv1.ComplianceStatus_COMPLIANCE_STATUS_UNKNOWN,
	fleet.StatusStale:     flasherv1.ComplianceStatus_COMPLIANCE_STATUS_STALE,
	fleet.StatusRefused:   flasherv1.ComplianceStatus_COMPLIANCE_STATUS_REFUSED,
}

func serverComplianceToPB(r fleet.ServerCompliance) *flasherv1.ServerCompliance {
	out := &flasherv1.ServerCompliance{
		ServerId: r.ServerID, FirmwareSet: r.Set, SetResolved: r.Resolved, Status: complianceStatusToPB[r.Status],
		RefusalCode: r.Code, RefusalReason: r.Reason, ObservedAt: optionalTime(r.ObservedAt),
	}
	for _, c := range r.Components {
		out.Components = append(out.Components, &flasherv1.ComponentCompliance{
			Component: c.Component, Serial: c.Serial, Vendor: c.Vendor, Model: c.Model,
			WantedVersion: c.Wanted, FirmwareId: c.FirmwareID, InstalledVersion: c.Installed,
			Source: versionSourceToPB(c.Source), ObservedAt: optionalTime(c.ObservedAt), Status: complianceStatusToPB[c.Status],
		})
	}
	return out
}
