package openaitest_test

import (
	"context"
	"fmt"
	"net/http/httptest"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/infertrail/infertrail/capture/openai/openaitest"
)

// An Upstream answers the official SDK as api.openai.com would, and
// remembers what it was sent.
func ExampleUpstream() {
	up := &openaitest.Upstream{Model: "gpt-4o-2024-08-06", Text: "Bonjour !"}
	srv := httptest.NewServer(up)
	defer srv.Close()

	client := openai.NewClient(option.WithBaseURL(srv.URL+"/v1/"), option.WithAPIKey("sk-test"))
	cc, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model:    "gpt-4o",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello in French.")},
	})
	if err != nil {
		panic(err)
	}
	last, _ := up.Last()
	fmt.Println(cc.Model, cc.Choices[0].Message.Content)
	fmt.Println(last.Method, last.Path, last.Header.Get("Authorization"))
	// Output:
	// gpt-4o-2024-08-06 Bonjour !
	// POST /v1/chat/completions Bearer sk-test
}
