package openaitest

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
)

type embeddingList struct {
	Object string      `json:"object"`
	Data   []embedding `json:"data"`
	Model  string      `json:"model"`
	Usage  struct {
		PromptTokens int `json:"prompt_tokens"`
		TotalTokens  int `json:"total_tokens"`
	} `json:"usage"`
}

type embedding struct {
	Object    string `json:"object"`
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"` // []float32, or base64 of little-endian float32s
}

// embeddingSize is the length of a vector when the request does not ask
// for a size; maxEmbeddingSize bounds what it may ask for.
const (
	embeddingSize    = 8
	maxEmbeddingSize = 4096
)

func (x *exchange) embeddings(req *request) embeddingList {
	inputs := 1
	var list []json.RawMessage
	if json.Unmarshal(req.Input, &list) == nil && len(list) > 0 {
		inputs = len(list)
	}
	dims := embeddingSize
	if req.Dimensions > 0 {
		dims = min(req.Dimensions, maxEmbeddingSize)
	}
	out := embeddingList{Object: "list", Model: x.model}
	for i := range inputs {
		vec := make([]float32, dims)
		for j := range vec {
			vec[j] = float32(math.Sin(float64(i*dims + j + 1)))
		}
		var emb any = vec
		if req.EncodingFormat == "base64" {
			b := make([]byte, 4*len(vec))
			for j, f := range vec {
				binary.LittleEndian.PutUint32(b[4*j:], math.Float32bits(f))
			}
			emb = base64.StdEncoding.EncodeToString(b)
		}
		out.Data = append(out.Data, embedding{Object: "embedding", Index: i, Embedding: emb})
	}
	out.Usage.PromptTokens = x.inputTokens()
	out.Usage.TotalTokens = out.Usage.PromptTokens
	return out
}

type modelList struct {
	Object string  `json:"object"`
	Data   []model `json:"data"`
}

type model struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}
