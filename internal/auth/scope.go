package auth

import (
	"slices"
	"strings"
)

// Scope is a permission a client token carries.
type Scope = string

// The scopes Flasher knows. Admin implies every other scope.
const (
	ScopeTasksRead     Scope = "tasks:read"
	ScopeTasksWrite    Scope = "tasks:write"
	ScopeTasksCancel   Scope = "tasks:cancel"
	ScopeInventoryRead Scope = "inventory:read"
	ScopeAgentsRead    Scope = "agents:read"
	ScopeAuditRead     Scope = "audit:read"
	ScopeAdmin         Scope = "admin"
	// ScopeAgent is held by agents authenticated by their certificate; no token can carry it
	// (token sources refuse it), so a client can never pass for an agent.
	ScopeAgent Scope = "agent"
)

// KnownScopes lists the scopes a token may carry.
var KnownScopes = []Scope{
	ScopeTasksRead, ScopeTasksWrite, ScopeTasksCancel, ScopeInventoryRead,
	ScopeAgentsRead, ScopeAuditRead, ScopeAdmin,
}

// ValidScope reports whether s is a scope a token may carry.
func ValidScope(s string) bool { return slices.Contains(KnownScopes, s) }

// HasScope reports whether the identity holds scope s, directly or through admin.
func (id Identity) HasScope(s Scope) bool {
	for _, have := range id.Scopes {
		if have == s || (have == ScopeAdmin && s != ScopeAgent) {
			return true
		}
	}
	return false
}

// Rule says how one gRPC method is authorized.
type Rule struct {
	// Scope the caller's token must hold.
	Scope Scope
	// Agent marks methods only agents call: the caller is authenticated by its client
	// certificate (AgentVerifier), never by a token.
	Agent bool
	// Bootstrap marks the one agent method callable without a client certificate (Enroll): a
	// presented certificate is verified as for Agent and names the caller; without one the call
	// reaches the handler with no identity, and the handler authenticates its join token.
	Bootstrap bool
}

// Policy maps full gRPC method names ("/flasher.v1.TaskService/CreateTask") to their rule.
// Methods not in the policy are refused unless the caller is admin: a new RPC stays closed
// until someone decides who may call it.
type Policy map[string]Rule

// EnrollMethod is the full name of AgentService.Enroll, the agents' certificate bootstrap.
const EnrollMethod = "/flasher.v1.AgentService/Enroll"

// DefaultPolicy is the rule table for Flasher's services. AuditService and AgentService are
// named by string so this package needs no generated code.
func DefaultPolicy() Policy {
	p := Policy{}
	for m, s := range map[string]Scope{
		"CreateTask":     ScopeTasksWrite,
		"PlanTask":       ScopeTasksRead,
		"GetTask":        ScopeTasksRead,
		"ListTasks":      ScopeTasksRead,
		"ListTaskEvents": ScopeTasksRead,
		"WatchTasks":     ScopeTasksRead,
		"CancelTask":     ScopeTasksCancel,
	} {
		p["/flasher.v1.TaskService/"+m] = Rule{Scope: s}
	}
	// A rollout creates tasks: starting, pausing, resuming or approving one needs tasks:write,
	// cancelling it tasks:cancel, as for single tasks.
	for m, s := range map[string]Scope{
		"CreateRollout": ScopeTasksWrite, "PauseRollout": ScopeTasksWrite, "ResumeRollout": ScopeTasksWrite,
		"ApproveRollout": ScopeTasksWrite, "CancelRollout": ScopeTasksCancel, "PlanRollout": ScopeTasksRead,
		"GetRollout": ScopeTasksRead, "ListRollouts": ScopeTasksRead, "WatchRollouts": ScopeTasksRead,
	} {
		p["/flasher.v1.RolloutService/"+m] = Rule{Scope: s}
	}
	for _, m := range []string{"ListServers", "GetServer", "ListFirmware", "ListFirmwareSets"} {
		p["/flasher.v1.InventoryService/"+m] = Rule{Scope: ScopeInventoryRead}
	}
	// A collect reads BMCs (and waits on tasks): it acts on hardware, so it needs tasks:write.
	p["/flasher.v1.InventoryService/CollectInventory"] = Rule{Scope: ScopeTasksWrite}
	for _, m := range []string{"ListCompliance", "SummarizeCompliance"} {
		p["/flasher.v1.ComplianceService/"+m] = Rule{Scope: ScopeInventoryRead}
	}
	for _, m := range []string{"Connect", "FetchArtifact"} {
		p["/flasher.v1.AgentService/"+m] = Rule{Scope: ScopeAgent, Agent: true}
	}
	p[EnrollMethod] = Rule{Scope: ScopeAgent, Agent: true, Bootstrap: true}
	p["/flasher.v1.AgentService/ListAgents"] = Rule{Scope: ScopeAgentsRead} // operators, not agents
	p["/flasher.v1.AuditService/ListAuditEvents"] = Rule{Scope: ScopeAuditRead}
	return p
}

// Rule returns the method's rule; unknown methods require admin.
func (p Policy) Rule(fullMethod string) Rule {
	if r, ok := p[fullMethod]; ok {
		return r
	}
	return Rule{Scope: ScopeAdmin}
}

// parseScopes splits a space-separated scope string, dropping empty fields.
func parseScopes(s string) []string { return strings.Fields(s) }
