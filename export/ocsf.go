package export

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/infertrail/infertrail"
)

// OCSFVersion is the version of the Open Cybersecurity Schema Framework
// (https://schema.ocsf.io) whose classes and attributes OCSF events use.
// docs/siem.md gives the mapping of each record kind.
const OCSFVersion = "1.5.0"

// OCSFConfig says how records and findings become OCSF events.
type OCSFConfig struct {
	// Origin is the log's checkpoint origin, metadata.log_name.
	Origin string
	// Version is InferTrail's version, metadata.product.version.
	Version string
	// IncludeLeaf puts the record's canonical leaf in raw_data, so that a
	// SIEM copy can be checked against the log (its SHA-256 with a 0x00
	// prefix is unmapped.leaf_hash, the record's Merkle leaf hash).
	IncludeLeaf bool
}

// OCSF categories and classes used.
const (
	ocsfCatFindings    = 2
	ocsfCatIAM         = 3
	ocsfCatApplication = 6

	ocsfDetectionFinding     = 2004
	ocsfEntityManagement     = 3004
	ocsfWebResourcesActivity = 6001
	ocsfAPIActivity          = 6003
)

var ocsfCategoryNames = map[int]string{
	ocsfCatFindings:    "Findings",
	ocsfCatIAM:         "Identity & Access Management",
	ocsfCatApplication: "Application Activity",
}

var ocsfClassNames = map[int]string{
	ocsfDetectionFinding:     "Detection Finding",
	ocsfEntityManagement:     "Entity Management",
	ocsfWebResourcesActivity: "Web Resources Activity",
	ocsfAPIActivity:          "API Activity",
}

// ocsfEvent is the subset of OCSF attributes InferTrail fills in.
type ocsfEvent struct {
	ActivityID   int    `json:"activity_id"`
	ActivityName string `json:"activity_name"`
	CategoryUID  int    `json:"category_uid"`
	CategoryName string `json:"category_name"`
	ClassUID     int    `json:"class_uid"`
	ClassName    string `json:"class_name"`
	TypeUID      int    `json:"type_uid"`
	TypeName     string `json:"type_name"`
	Time         int64  `json:"time"`
	SeverityID   int    `json:"severity_id"`
	Severity     string `json:"severity"`
	StatusID     int    `json:"status_id,omitempty"`
	Status       string `json:"status,omitempty"`
	StatusCode   string `json:"status_code,omitempty"`
	StatusDetail string `json:"status_detail,omitempty"`
	Message      string `json:"message,omitempty"`

	Metadata     ocsfMetadata      `json:"metadata"`
	Actor        *ocsfActor        `json:"actor,omitempty"`
	API          *ocsfAPI          `json:"api,omitempty"`
	SrcEndpoint  *ocsfEndpoint     `json:"src_endpoint,omitempty"`
	DstEndpoint  *ocsfEndpoint     `json:"dst_endpoint,omitempty"`
	HTTPRequest  *ocsfHTTPRequest  `json:"http_request,omitempty"`
	HTTPResponse *ocsfHTTPResponse `json:"http_response,omitempty"`
	Resources    []ocsfResource    `json:"resources,omitempty"`
	WebResources []ocsfResource    `json:"web_resources,omitempty"`
	Entity       *ocsfResource     `json:"entity,omitempty"`
	Comment      string            `json:"comment,omitempty"`

	// The Security Control profile.
	ActionID      int         `json:"action_id,omitempty"`
	Action        string      `json:"action,omitempty"`
	DispositionID int         `json:"disposition_id,omitempty"`
	Disposition   string      `json:"disposition,omitempty"`
	Policy        *ocsfPolicy `json:"policy,omitempty"`

	// Findings.
	FindingInfo *ocsfFindingInfo `json:"finding_info,omitempty"`
	IsAlert     bool             `json:"is_alert,omitempty"`

	RawData  string        `json:"raw_data,omitempty"`
	Unmapped *ocsfUnmapped `json:"unmapped,omitempty"`
}

type ocsfMetadata struct {
	Version        string      `json:"version"`
	Product        ocsfProduct `json:"product"`
	UID            string      `json:"uid"`
	Sequence       int64       `json:"sequence"`
	LogName        string      `json:"log_name,omitempty"`
	LogProvider    string      `json:"log_provider"`
	OriginalTime   string      `json:"original_time,omitempty"`
	LoggedTime     int64       `json:"logged_time,omitempty"`
	TenantUID      string      `json:"tenant_uid,omitempty"`
	CorrelationUID string      `json:"correlation_uid,omitempty"`
	EventCode      string      `json:"event_code,omitempty"`
	Profiles       []string    `json:"profiles,omitempty"`
}

type ocsfProduct struct {
	Name       string `json:"name"`
	VendorName string `json:"vendor_name"`
	Version    string `json:"version,omitempty"`
}

type ocsfActor struct {
	User    *ocsfUser    `json:"user,omitempty"`
	AppUID  string       `json:"app_uid,omitempty"`
	Session *ocsfSession `json:"session,omitempty"`
}

type ocsfUser struct {
	UID           string `json:"uid,omitempty"`
	Name          string `json:"name,omitempty"`
	TypeID        int    `json:"type_id,omitempty"`
	Type          string `json:"type,omitempty"`
	CredentialUID string `json:"credential_uid,omitempty"`
}

type ocsfSession struct {
	UID string `json:"uid"`
}

type ocsfAPI struct {
	Operation string        `json:"operation"`
	Service   *ocsfService  `json:"service,omitempty"`
	Request   *ocsfRequest  `json:"request,omitempty"`
	Response  *ocsfResponse `json:"response,omitempty"`
}

type ocsfService struct {
	Name string `json:"name"`
}

type ocsfRequest struct {
	UID string `json:"uid"`
}

type ocsfResponse struct {
	Code  int    `json:"code,omitempty"`
	Error string `json:"error,omitempty"`
}

type ocsfEndpoint struct {
	Name     string `json:"name,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	IP       string `json:"ip,omitempty"`
	Port     int    `json:"port,omitempty"`
	SvcName  string `json:"svc_name,omitempty"`
}

type ocsfHTTPRequest struct {
	HTTPMethod string   `json:"http_method,omitempty"`
	URL        *ocsfURL `json:"url,omitempty"`
}

type ocsfURL struct {
	URLString string `json:"url_string,omitempty"`
	Hostname  string `json:"hostname,omitempty"`
	Path      string `json:"path,omitempty"`
	Port      int    `json:"port,omitempty"`
}

type ocsfHTTPResponse struct {
	Code int `json:"code"`
}

type ocsfResource struct {
	UID  string         `json:"uid,omitempty"`
	Name string         `json:"name,omitempty"`
	Type string         `json:"type,omitempty"`
	Data map[string]any `json:"data,omitempty"`
}

type ocsfPolicy struct {
	UID     string `json:"uid,omitempty"`
	Name    string `json:"name,omitempty"`
	Version string `json:"version,omitempty"`
}

type ocsfFindingInfo struct {
	UID           string             `json:"uid"`
	Title         string             `json:"title"`
	Desc          string             `json:"desc,omitempty"`
	Types         []string           `json:"types,omitempty"`
	Analytic      *ocsfAnalytic      `json:"analytic,omitempty"`
	CreatedTime   int64              `json:"created_time,omitempty"`
	RelatedEvents []ocsfRelatedEvent `json:"related_events,omitempty"`
}

type ocsfAnalytic struct {
	Name   string `json:"name"`
	TypeID int    `json:"type_id"`
	Type   string `json:"type"`
}

type ocsfRelatedEvent struct {
	UID string `json:"uid"`
}

// ocsfUnmapped holds what OCSF has no attribute for: the record as the log
// keeps it, less nothing but its layout. Content is never here, only its
// commitments.
type ocsfUnmapped struct {
	Kind          string                     `json:"kind"`
	Seq           int64                      `json:"seq"`
	ID            string                     `json:"id"`
	LeafHash      string                     `json:"leaf_hash,omitempty"`
	Origin        string                     `json:"origin,omitempty"`
	Source        string                     `json:"source,omitempty"`
	SchemaVersion int                        `json:"schema_version,omitempty"`
	Tenant        string                     `json:"tenant,omitempty"`
	ObservedTime  string                     `json:"time,omitempty"`
	ReceivedTime  string                     `json:"received_time,omitempty"`
	SessionID     string                     `json:"session_id,omitempty"`
	TraceID       string                     `json:"trace_id,omitempty"`
	SpanID        string                     `json:"span_id,omitempty"`
	ParentSpanID  string                     `json:"parent_span_id,omitempty"`
	Actor         *infertrail.Actor          `json:"actor,omitempty"`
	Links         []infertrail.Link          `json:"links,omitempty"`
	Attributes    map[string]json.RawMessage `json:"attributes,omitempty"`
	Commitments   map[string]string          `json:"commitments,omitempty"`

	// Findings.
	Detector string  `json:"detector,omitempty"`
	Subject  string  `json:"subject,omitempty"`
	Records  []int64 `json:"records,omitempty"`
	N        int64   `json:"n,omitempty"`
}

// LeafHash returns the Merkle leaf hash of a canonical leaf,
// SHA-256(0x00 || leaf), in hex: the hash the log's tree holds for it.
func LeafHash(leaf []byte) string {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(leaf)
	return hex.EncodeToString(h.Sum(nil))
}

// OCSFRecord maps one log entry to an OCSF event (docs/siem.md) and
// returns its JSON and the record parsed from the entry's leaf. The event
// carries the record's metadata and attributes and its content
// commitments, never content.
func OCSFRecord(e *infertrail.Entry, cfg OCSFConfig) ([]byte, *infertrail.Record, error) {
	r, err := infertrail.ParseLeaf(e.Leaf)
	if err != nil {
		return nil, nil, fmt.Errorf("map record %d to OCSF: %w", e.Seq, err)
	}
	ev := ocsfRecord(r, cfg)
	ev.Unmapped.LeafHash = LeafHash(e.Leaf)
	if cfg.IncludeLeaf {
		ev.RawData = string(e.Leaf)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return nil, nil, fmt.Errorf("map record %d to OCSF: %w", e.Seq, err)
	}
	return b, r, nil
}

func ocsfBase(classUID, activityID int, activityName string) ocsfEvent {
	cat := classUID / 1000
	return ocsfEvent{
		ActivityID: activityID, ActivityName: activityName,
		CategoryUID: cat, CategoryName: ocsfCategoryNames[cat],
		ClassUID: classUID, ClassName: ocsfClassNames[classUID],
		TypeUID: classUID*100 + activityID, TypeName: ocsfClassNames[classUID] + ": " + activityName,
		SeverityID: 1, Severity: "Informational",
		StatusID: 1, Status: "Success",
	}
}

func (ev *ocsfEvent) fail(detail string) {
	ev.StatusID, ev.Status, ev.StatusDetail = 2, "Failure", detail
}

// ocsfRecord maps a record.
func ocsfRecord(r *infertrail.Record, cfg OCSFConfig) *ocsfEvent {
	var ev ocsfEvent
	str := func(name string) string { return attrString(r, name) }
	intAttr := func(name string) int {
		f, ok := attrNumber(r, name)
		if !ok || f != float64(int(f)) {
			return 0
		}
		return int(f)
	}
	errType := str("error.type")
	switch r.Kind {
	case infertrail.KindInference:
		ev = ocsfBase(ocsfAPIActivity, 99, "Inference")
		op := cmp.Or(str("gen_ai.operation.name"), "inference")
		model := cmp.Or(str("gen_ai.response.model"), str("gen_ai.request.model"))
		ev.API = &ocsfAPI{Operation: op}
		if p := str("gen_ai.provider.name"); p != "" {
			ev.API.Service = &ocsfService{Name: p}
		}
		if id := str("gen_ai.response.id"); id != "" {
			ev.API.Request = &ocsfRequest{UID: id}
		}
		if model != "" {
			res := ocsfResource{Type: "AI Model", Name: model}
			if req := str("gen_ai.request.model"); req != "" && req != model {
				res.Data = map[string]any{"requested_model": req}
			}
			ev.Resources = []ocsfResource{res}
		}
		ev.Message = strings.TrimSpace(op + " " + model)
		if errType != "" {
			ev.fail(errType)
		}
	case infertrail.KindToolCall:
		ev = ocsfBase(ocsfAPIActivity, 99, "Tool Call")
		tool := cmp.Or(str("gen_ai.tool.name"), "unknown")
		ev.API = &ocsfAPI{Operation: cmp.Or(str("mcp.method.name"), str("gen_ai.operation.name"), "execute_tool")}
		if id := str("gen_ai.tool.call.id"); id != "" {
			ev.API.Request = &ocsfRequest{UID: id}
		}
		ev.Resources = []ocsfResource{{Type: "Tool", Name: tool, UID: str("gen_ai.tool.call.id")}}
		ev.Message = "tool call " + tool
		if attrBool(r, "tool.is_error") || errType != "" {
			ev.fail(cmp.Or(errType, "tool reported an error"))
		}
	case infertrail.KindDownstreamCall:
		method := strings.ToUpper(str("http.request.method"))
		op := method
		activity := 0
		if method != "" {
			activity = activityOfHTTP(method)
		} else if dbOp := strings.ToUpper(str("db.operation.name")); dbOp != "" {
			op, activity = dbOp, activityOfDB(dbOp)
		}
		name := map[int]string{1: "Create", 2: "Read", 3: "Update", 4: "Delete"}[activity]
		if name == "" {
			activity, name = 99, "Downstream Call"
		}
		ev = ocsfBase(ocsfAPIActivity, activity, name)
		ev.API = &ocsfAPI{Operation: cmp.Or(op, "call")}
		if svc := cmp.Or(str("server.address"), str("db.system.name")); svc != "" {
			ev.API.Service = &ocsfService{Name: svc}
		}
		if host := str("server.address"); host != "" {
			ev.DstEndpoint = &ocsfEndpoint{Hostname: host, Port: intAttr("server.port")}
		}
		if method != "" {
			req := &ocsfHTTPRequest{HTTPMethod: method}
			if u := cmp.Or(str("url.full"), str("url.path")); u != "" {
				req.URL = &ocsfURL{URLString: str("url.full"), Path: str("url.path"), Hostname: str("server.address"), Port: intAttr("server.port")}
			}
			ev.HTTPRequest = req
		}
		if code := intAttr("http.response.status_code"); code != 0 {
			ev.HTTPResponse = &ocsfHTTPResponse{Code: code}
			ev.API.Response = &ocsfResponse{Code: code}
			ev.StatusCode = strconv.Itoa(code)
			if code >= 400 {
				ev.fail(cmp.Or(errType, "HTTP "+strconv.Itoa(code)))
			}
		} else if errType != "" {
			ev.fail(errType)
		}
		if coll := str("db.collection.name"); coll != "" {
			ev.Resources = []ocsfResource{{Type: "Database Collection", Name: coll}}
		}
		ev.Message = strings.TrimSpace("downstream " + op + " " + cmp.Or(str("url.full"), str("url.path"), str("server.address"), str("db.system.name")))
	case infertrail.KindRetrieval:
		ev = ocsfBase(ocsfAPIActivity, 2, "Read")
		src := str("gen_ai.data_source.id")
		ev.API = &ocsfAPI{Operation: cmp.Or(str("gen_ai.operation.name"), "retrieval")}
		if s := str("db.system.name"); s != "" {
			ev.API.Service = &ocsfService{Name: s}
		}
		if src != "" {
			ev.Resources = []ocsfResource{{Type: "Data Source", UID: src, Name: src}}
		}
		ev.Message = strings.TrimSpace("retrieval " + src)
		if errType != "" {
			ev.fail(errType)
		}
	case infertrail.KindPolicyDecision:
		ev = ocsfBase(ocsfAPIActivity, 99, "Policy Decision")
		result := str("policy.result")
		ev.API = &ocsfAPI{Operation: cmp.Or(str("policy.point"), "policy_decision")}
		if e := str("policy.engine"); e != "" {
			ev.API.Service = &ocsfService{Name: e}
		}
		ev.ActionID, ev.Action, ev.DispositionID, ev.Disposition = decisionAction(result)
		ev.Policy = &ocsfPolicy{UID: str("policy.id"), Name: str("policy.id"), Version: cmp.Or(str("policy.bundle_digest"), str("policy.bundle"))}
		if tool := str("gen_ai.tool.name"); tool != "" {
			ev.Resources = []ocsfResource{{Type: "Tool", Name: tool, UID: str("gen_ai.tool.call.id")}}
		}
		ev.Metadata.Profiles = []string{"security_control"}
		ev.Message = strings.TrimSpace("policy " + cmp.Or(result, "decision") + " " + str("gen_ai.tool.name"))
	case infertrail.KindApproval:
		ev = ocsfBase(ocsfAPIActivity, 99, "Approval")
		decision := str("approval.decision")
		ev.API = &ocsfAPI{Operation: "approval"}
		if ch := str("approval.channel"); ch != "" {
			ev.API.Service = &ocsfService{Name: ch}
		}
		switch decision {
		case "approved":
			ev.ActionID, ev.Action, ev.DispositionID, ev.Disposition = 1, "Allowed", 8, "Approved"
		case "rejected":
			ev.ActionID, ev.Action, ev.DispositionID, ev.Disposition = 2, "Denied", 25, "Rejected"
		}
		if tool := str("gen_ai.tool.name"); tool != "" {
			ev.Resources = []ocsfResource{{Type: "Tool", Name: tool, UID: str("gen_ai.tool.call.id")}}
		}
		ev.Metadata.Profiles = []string{"security_control"}
		ev.Message = strings.TrimSpace("approval " + cmp.Or(decision, "decision") + " by " + cmp.Or(str("approval.approver"), r.Actor.ID))
	case infertrail.KindCredential:
		event := str("credential.event")
		id, name := credentialActivity(event)
		ev = ocsfBase(ocsfEntityManagement, id, name)
		ent := &ocsfResource{Type: "Credential", UID: r.Actor.CredentialFingerprint,
			Name: cmp.Or(str("credential.type"), str("credential.subject"), "credential")}
		data := map[string]any{}
		for _, a := range []string{"credential.issuer", "credential.subject", "credential.audience", "credential.scopes",
			"credential.ttl_seconds", "credential.expiry_time"} {
			if v, ok := r.Attributes[a]; ok {
				data[strings.TrimPrefix(a, "credential.")] = v
			}
		}
		if len(data) > 0 {
			ent.Data = data
		}
		ev.Entity = ent
		ev.Message = strings.TrimSpace("credential " + cmp.Or(event, "event") + " " + r.Actor.CredentialFingerprint)
	case infertrail.KindAccess:
		action := str("access.action")
		id, name := accessActivity(action)
		ev = ocsfBase(ocsfWebResourcesActivity, id, name)
		for _, l := range r.Links {
			if l.Rel == "reads" {
				ev.WebResources = append(ev.WebResources, ocsfResource{Type: "Record", UID: l.ID.String()})
			}
		}
		if seq := str("access.record.seq"); seq != "" && len(ev.WebResources) == 0 {
			ev.WebResources = append(ev.WebResources, ocsfResource{Type: "Record", Name: "record " + seq})
		}
		if h := str("hold.id"); h != "" {
			ev.WebResources = append(ev.WebResources, ocsfResource{Type: "Legal Hold", UID: h, Name: str("hold.scope")})
		}
		if len(ev.WebResources) == 0 {
			ev.WebResources = []ocsfResource{{Type: "Evidence", Name: cmp.Or(action, "access")}}
		}
		if p := str("http.request.path"); p != "" {
			ev.HTTPRequest = &ocsfHTTPRequest{URL: &ocsfURL{Path: p}}
		}
		ev.Comment = str("access.reason")
		ev.Message = strings.TrimSpace("access " + cmp.Or(action, "") + " by " + r.Actor.ID)
	case infertrail.KindErasure:
		ev = ocsfBase(ocsfWebResourcesActivity, 4, "Delete")
		scope := str("erasure.scope")
		ev.WebResources = []ocsfResource{{Type: "Erasure Scope", Name: cmp.Or(scope, "unknown")}}
		ev.Comment = str("erasure.reason")
		ev.Message = strings.TrimSpace("erasure (" + cmp.Or(str("erasure.trigger"), "request") + ") of " + scope)
	default:
		ev = ocsfBase(ocsfAPIActivity, 0, "Unknown")
		ev.API = &ocsfAPI{Operation: string(r.Kind)}
	}

	ev.Time = r.Time.UnixMilli()
	ev.Metadata.Version = OCSFVersion
	ev.Metadata.Product = ocsfProduct{Name: "InferTrail", VendorName: "InferTrail", Version: cfg.Version}
	ev.Metadata.UID = r.ID.String()
	ev.Metadata.Sequence = r.Seq
	ev.Metadata.LogName = cfg.Origin
	ev.Metadata.LogProvider = "InferTrail"
	ev.Metadata.OriginalTime = infertrail.FormatTime(r.Time)
	ev.Metadata.LoggedTime = r.ReceivedTime.UnixMilli()
	ev.Metadata.TenantUID = r.Tenant
	ev.Metadata.CorrelationUID = r.TraceID
	ev.Metadata.EventCode = string(r.Kind)

	ev.Actor = ocsfActorOf(r.Actor, r.SessionID)
	if ev.ClassUID == ocsfAPIActivity || ev.ClassUID == ocsfWebResourcesActivity {
		ep := &ocsfEndpoint{Name: cmp.Or(r.Actor.Workload, r.Actor.ID)}
		if a := str("client.address"); a != "" {
			if ip, err := netip.ParseAddr(a); err == nil {
				ep.IP = ip.String()
			} else {
				ep.Hostname = a
			}
		}
		ev.SrcEndpoint = ep
	}
	if ev.Actor == nil && ev.ClassUID == ocsfAPIActivity {
		ev.Actor = &ocsfActor{} // required by the class, even when nobody is named
	}

	var actor *infertrail.Actor
	if r.Actor != (infertrail.Actor{}) {
		a := r.Actor
		actor = &a
	}
	ev.Unmapped = &ocsfUnmapped{
		Kind: string(r.Kind), Seq: r.Seq, ID: r.ID.String(), Origin: cfg.Origin, Source: r.Source,
		SchemaVersion: infertrail.SchemaVersion, Tenant: r.Tenant,
		ObservedTime: infertrail.FormatTime(r.Time), ReceivedTime: infertrail.FormatTime(r.ReceivedTime),
		SessionID: r.SessionID, TraceID: r.TraceID, SpanID: r.SpanID, ParentSpanID: r.ParentSpanID,
		Actor: actor, Links: r.Links, Attributes: r.Attributes, Commitments: r.Commitments,
	}
	return &ev
}

func ocsfActorOf(a infertrail.Actor, session string) *ocsfActor {
	if a == (infertrail.Actor{}) && session == "" {
		return nil
	}
	out := &ocsfActor{AppUID: a.Workload}
	if a.ID != "" || a.CredentialFingerprint != "" {
		u := &ocsfUser{UID: a.ID, Name: a.ID, CredentialUID: a.CredentialFingerprint}
		switch a.Type {
		case "user":
			u.TypeID, u.Type = 1, "User"
		case "":
		default:
			u.TypeID, u.Type = 99, a.Type
		}
		out.User = u
	}
	if session != "" {
		out.Session = &ocsfSession{UID: session}
	}
	return out
}

// activityOfHTTP maps an HTTP method to an API Activity activity.
func activityOfHTTP(method string) int {
	switch method {
	case "POST":
		return 1
	case "GET", "HEAD", "OPTIONS":
		return 2
	case "PUT", "PATCH":
		return 3
	case "DELETE":
		return 4
	}
	return 99
}

// activityOfDB maps a database operation to an API Activity activity.
func activityOfDB(op string) int {
	switch op {
	case "INSERT", "CREATE":
		return 1
	case "SELECT", "FIND", "GET", "READ":
		return 2
	case "UPDATE", "UPSERT", "MERGE", "REPLACE":
		return 3
	case "DELETE", "DROP", "TRUNCATE":
		return 4
	}
	return 99
}

// decisionAction maps policy.result to the Security Control profile.
func decisionAction(result string) (actionID int, action string, dispositionID int, disposition string) {
	switch result {
	case "allow":
		return 1, "Allowed", 1, "Allowed"
	case "deny":
		return 2, "Denied", 2, "Blocked"
	case "modify":
		return 1, "Allowed", 11, "Corrected"
	case "require_approval":
		return 1, "Allowed", 14, "Delayed"
	}
	return 0, "Unknown", 0, "Unknown"
}

// credentialActivity maps credential.event to an Entity Management activity.
func credentialActivity(event string) (int, string) {
	switch event {
	case "issued":
		return 1, "Create"
	case "rotated":
		return 3, "Update"
	case "revoked":
		return 9, "Disable"
	case "expired":
		return 11, "Deactivate"
	case "used":
		return 99, "Use"
	case "":
		return 0, "Unknown"
	}
	return 99, event
}

// accessActivity maps access.action to a Web Resources Activity activity.
func accessActivity(action string) (int, string) {
	switch action {
	case "read_content":
		return 2, "Read"
	case "export":
		return 7, "Export"
	case "configure", "hold.add", "hold.release":
		return 3, "Update"
	case "":
		return 0, "Unknown"
	}
	return 99, action
}

// OCSFFinding maps a finding to an OCSF Detection Finding. relatedIDs are
// the ids of its records, in the order of f.Records, where known.
func OCSFFinding(f *infertrail.Finding, relatedIDs []infertrail.UUID, cfg OCSFConfig) ([]byte, error) {
	ev := ocsfBase(ocsfDetectionFinding, 1, "Create")
	ev.StatusID, ev.Status = 1, "New" // a finding's status is its triage state
	ev.SeverityID, ev.Severity = severityOf(f.Severity)
	ev.IsAlert = f.Severity == infertrail.SeverityMedium || f.Severity == infertrail.SeverityHigh
	ev.Time = time.Unix(0, f.Time).UnixMilli()
	ev.Message = f.Summary
	info := &ocsfFindingInfo{UID: f.ID.String(), Title: cmp.Or(f.Summary, f.Detector), Desc: f.Summary,
		Types: []string{f.Detector}, Analytic: &ocsfAnalytic{Name: f.Detector, TypeID: 1, Type: "Rule"},
		CreatedTime: ev.Time}
	for _, id := range relatedIDs {
		if !id.IsZero() {
			info.RelatedEvents = append(info.RelatedEvents, ocsfRelatedEvent{UID: id.String()})
		}
	}
	ev.FindingInfo = info
	if f.Subject != "" {
		field, value, _ := infertrail.SplitIndexKey(f.Subject)
		ev.Resources = []ocsfResource{{Type: field, Name: value}}
	}
	ev.Metadata = ocsfMetadata{Version: OCSFVersion, Product: ocsfProduct{Name: "InferTrail", VendorName: "InferTrail", Version: cfg.Version},
		UID: f.ID.String(), Sequence: f.N, LogName: cfg.Origin, LogProvider: "InferTrail", TenantUID: f.Tenant, EventCode: "finding",
		OriginalTime: infertrail.FormatTime(time.Unix(0, f.Time))}
	ev.Unmapped = &ocsfUnmapped{Kind: "finding", ID: f.ID.String(), Origin: cfg.Origin, Tenant: f.Tenant,
		Detector: f.Detector, Subject: f.Subject, Records: f.Records, N: f.N}
	b, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("map finding %s to OCSF: %w", f.ID, err)
	}
	return b, nil
}

func severityOf(s infertrail.Severity) (int, string) {
	switch s {
	case infertrail.SeverityLow:
		return 2, "Low"
	case infertrail.SeverityMedium:
		return 3, "Medium"
	case infertrail.SeverityHigh:
		return 4, "High"
	}
	return 0, "Unknown"
}
