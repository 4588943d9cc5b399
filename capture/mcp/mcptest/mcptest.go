// Package mcptest provides a scripted MCP server, built on the official Go
// SDK, for the MCP gateway's tests, the end-to-end tests and benchmarks.
package mcptest

import (
	"context"
	"fmt"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// NewServer returns a real MCP server (the official Go SDK) named
// payments-server 1.2.3, with four tools — pay (succeeds), refund (returns
// isError), export (reports progress three times), hang (blocks until
// release is closed, after sending on started if it is not nil) — the
// resource file:///policies/payments.md and the prompt approve.
func NewServer(release <-chan struct{}, started chan<- struct{}) *sdk.Server {
	s := sdk.NewServer(&sdk.Implementation{Name: "payments-server", Version: "1.2.3"}, nil)
	type payIn struct {
		Invoice   string  `json:"invoice"`
		AmountEUR float64 `json:"amount_eur"`
	}
	sdk.AddTool(s, &sdk.Tool{Name: "pay", Description: "Pay an invoice"}, func(_ context.Context, _ *sdk.CallToolRequest, in payIn) (*sdk.CallToolResult, any, error) {
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: fmt.Sprintf("paid %s: %.2f EUR", in.Invoice, in.AmountEUR)}}}, nil, nil
	})
	sdk.AddTool(s, &sdk.Tool{Name: "refund", Description: "Refund a payment"}, func(_ context.Context, _ *sdk.CallToolRequest, _ struct{}) (*sdk.CallToolResult, any, error) {
		return &sdk.CallToolResult{IsError: true, Content: []sdk.Content{&sdk.TextContent{Text: "refunds are closed today"}}}, nil, nil
	})
	sdk.AddTool(s, &sdk.Tool{Name: "export", Description: "Export the ledger, reporting progress"}, func(ctx context.Context, req *sdk.CallToolRequest, _ struct{}) (*sdk.CallToolResult, any, error) {
		for i := range 3 {
			req.Session.NotifyProgress(ctx, &sdk.ProgressNotificationParams{ProgressToken: req.Params.GetProgressToken(), Progress: float64(i + 1), Total: 3})
		}
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "exported 3 parts"}}}, nil, nil
	})
	sdk.AddTool(s, &sdk.Tool{Name: "hang", Description: "Block until released"}, func(ctx context.Context, _ *sdk.CallToolRequest, _ struct{}) (*sdk.CallToolResult, any, error) {
		if started != nil {
			started <- struct{}{}
		}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "released"}}}, nil, nil
	})
	s.AddResource(&sdk.Resource{URI: "file:///policies/payments.md", Name: "payments-policy", MIMEType: "text/markdown"},
		func(_ context.Context, req *sdk.ReadResourceRequest) (*sdk.ReadResourceResult, error) {
			return &sdk.ReadResourceResult{Contents: []*sdk.ResourceContents{{URI: req.Params.URI, MIMEType: "text/markdown", Text: "Payments over 1,000 EUR need approval."}}}, nil
		})
	s.AddPrompt(&sdk.Prompt{Name: "approve", Arguments: []*sdk.PromptArgument{{Name: "invoice", Required: true}}},
		func(_ context.Context, req *sdk.GetPromptRequest) (*sdk.GetPromptResult, error) {
			return &sdk.GetPromptResult{Messages: []*sdk.PromptMessage{{Role: "user", Content: &sdk.TextContent{Text: "Approve invoice " + req.Params.Arguments["invoice"] + "?"}}}}, nil
		})
	return s
}
