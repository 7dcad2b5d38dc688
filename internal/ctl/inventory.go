package ctl

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
)

func setupServers(fs *flag.FlagSet, a *app) runFunc {
	vendor := fs.String("vendor", "", "only servers of this vendor")
	model := fs.String("model", "", "only servers of this model")
	comps := fs.Bool("components", false, "include components (json/yaml)")
	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return usagef("inventory servers takes no arguments")
		}
		out := &flasherv1.ListServersResponse{}
		token := ""
		for {
			resp, err := call(ctx, a, flasherv1.NewInventoryServiceClient, func(ctx context.Context, ic flasherv1.InventoryServiceClient) (*flasherv1.ListServersResponse, error) {
				return ic.ListServers(ctx, &flasherv1.ListServersRequest{Vendor: *vendor, Model: *model, IncludeComponents: *comps, PageSize: 1000, PageToken: token})
			})
			if err != nil {
				return err
			}
			out.Servers = append(out.Servers, resp.GetServers()...)
			if token = resp.GetNextPageToken(); token == "" {
				break
			}
		}
		return a.emit(out, func(w io.Writer) error {
			tw := newTable(w)
			row(tw, "ID", "NAME", "VENDOR", "MODEL", "FACILITY", "SERIAL", "BMC")
			for _, s := range out.GetServers() {
				row(tw, s.GetId(), s.GetName(), s.GetVendor(), s.GetModel(), s.GetFacility(), s.GetSerial(), s.GetBmcAddress())
			}
			return tw.Flush()
		})
	}
}

func setupServer(fs *flag.FlagSet, a *app) runFunc {
	return func(ctx context.Context, args []string) error {
		if len(args) != 1 {
			return usagef("inventory server needs one server ID")
		}
		return show(ctx, a, flasherv1.NewInventoryServiceClient, func(ctx context.Context, ic flasherv1.InventoryServiceClient) (*flasherv1.GetServerResponse, error) {
			return ic.GetServer(ctx, &flasherv1.GetServerRequest{Id: args[0]})
		}, func(w io.Writer, resp *flasherv1.GetServerResponse) error {
			s := resp.GetServer()
			tw := newTable(w)
			for _, kv := range [][2]string{{"ID", s.GetId()}, {"Name", s.GetName()}, {"Facility", s.GetFacility()}, {"Vendor", s.GetVendor()},
				{"Model", s.GetModel()}, {"Serial", s.GetSerial()}, {"BMC", s.GetBmcAddress()}} {
				if kv[1] != "" {
					fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
				}
			}
			tw.Flush()
			fmt.Fprintln(w)
			tw = newTable(w)
			row(tw, "COMPONENT", "VENDOR", "MODEL", "SERIAL", "VERSION", "METHODS")
			for _, c := range s.GetComponents() {
				var m []string
				if c.GetOutOfBand() {
					m = append(m, "out-of-band")
				}
				if c.GetInBand() {
					m = append(m, "in-band")
				}
				row(tw, c.GetSlug(), c.GetVendor(), c.GetModel(), c.GetSerial(), c.GetVersion(), strings.Join(m, ","))
			}
			return tw.Flush()
		})
	}
}

func setupFirmware(fs *flag.FlagSet, a *app) runFunc {
	vendor := fs.String("vendor", "", "only firmware of this vendor")
	model := fs.String("model", "", "only firmware for this model")
	component := fs.String("component", "", "only firmware for this component slug")
	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return usagef("inventory firmware takes no arguments")
		}
		return show(ctx, a, flasherv1.NewInventoryServiceClient, func(ctx context.Context, ic flasherv1.InventoryServiceClient) (*flasherv1.ListFirmwareResponse, error) {
			return ic.ListFirmware(ctx, &flasherv1.ListFirmwareRequest{Vendor: *vendor, Model: *model, Component: *component})
		}, func(w io.Writer, resp *flasherv1.ListFirmwareResponse) error {
			tw := newTable(w)
			row(tw, "ID", "COMPONENT", "VENDOR", "MODELS", "VERSION", "SCHEME", "METHOD", "TAG", "REQUIRES")
			for _, f := range resp.GetFirmware() {
				var req []string
				for _, r := range f.GetRequires() {
					req = append(req, r.GetComponent()+r.GetConstraint())
				}
				for _, af := range f.GetAfter() {
					req = append(req, "after "+af)
				}
				row(tw, f.GetId(), f.GetComponent(), f.GetVendor(), strings.Join(f.GetModels(), ","), f.GetVersion(), f.GetVersionScheme(),
					methodName(f.GetMethod()), f.GetTag(), strings.Join(req, ", "))
			}
			return tw.Flush()
		})
	}
}

func setupSets(fs *flag.FlagSet, a *app) runFunc {
	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return usagef("inventory sets takes no arguments")
		}
		return show(ctx, a, flasherv1.NewInventoryServiceClient, func(ctx context.Context, ic flasherv1.InventoryServiceClient) (*flasherv1.ListFirmwareSetsResponse, error) {
			return ic.ListFirmwareSets(ctx, &flasherv1.ListFirmwareSetsRequest{})
		}, func(w io.Writer, resp *flasherv1.ListFirmwareSetsResponse) error {
			tw := newTable(w)
			row(tw, "ID", "NAME", "LABELS", "FIRMWARE")
			for _, s := range resp.GetFirmwareSets() {
				var labels []string
				for k, v := range s.GetLabels() {
					labels = append(labels, k+"="+v)
				}
				sort.Strings(labels)
				row(tw, s.GetId(), s.GetName(), strings.Join(labels, ","), strings.Join(s.GetFirmwareIds(), ","))
			}
			return tw.Flush()
		})
	}
}
