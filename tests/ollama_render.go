// Renders a chat the way Ollama's /api/chat does, with Go's own text/template, for
// tests/test_export_gguf.py (issue 15): the Modelfile's TEMPLATE must give the text training saw.
//
// Input (stdin, JSON): {"template": ..., "system": ..., "messages": [{"role": ..., "content": ...}]}.
// What Ollama does before the template runs (server/routes.go ChatHandler, template/template.go
// Execute, read for this test and written here anew):
//   - the Modelfile's SYSTEM becomes a first system message when the chat starts with none;
//   - runs of messages with the same role are joined with a blank line;
//   - the template sees .Messages (system messages included) and .System (their contents, joined
//     with a blank line), with missing keys as zero values.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/template"
)

type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type request struct {
	Template string    `json:"template"`
	System   string    `json:"system"`
	Messages []Message `json:"messages"`
}

func main() {
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fail(err)
	}
	msgs := req.Messages
	if len(msgs) > 0 && msgs[0].Role != "system" && req.System != "" {
		msgs = append([]Message{{Role: "system", Content: req.System}}, msgs...)
	}
	var systems []string
	var joined []*Message
	for i := range msgs {
		m := msgs[i]
		if m.Role == "system" {
			systems = append(systems, m.Content)
		}
		if n := len(joined); n > 0 && joined[n-1].Role == m.Role {
			joined[n-1].Content += "\n\n" + m.Content
			continue
		}
		joined = append(joined, &m)
	}
	tmpl, err := template.New("").Option("missingkey=zero").Parse(req.Template)
	if err != nil {
		fail(err)
	}
	values := map[string]any{"System": strings.Join(systems, "\n\n"), "Messages": joined, "Response": "", "Think": false}
	if err := tmpl.Execute(os.Stdout, values); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
