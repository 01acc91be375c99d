package tokenizer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/text/unicode/norm"
)

type conversation struct {
	name string
	msgs []Message
	gen  bool
	vars map[string]any
}

var (
	system = Message{"system", "You are a careful mathematician. Reason step by step."}
	q1     = Message{"user", "What is $2+2$? Put the final answer in \\boxed{}."}
	a1     = Message{"assistant", "We add: $2+2=4$.\n\n\\boxed{4}"}
	q2     = Message{"user", "And 3 × 7?"}
	a2     = Message{"assistant", "3 × 7 = 21, so the answer is \\boxed{21}."}
)

var conversations = []conversation{
	{name: "prompt", msgs: []Message{q1}, gen: true},
	{name: "system prompt", msgs: []Message{system, q1}, gen: true},
	{name: "one exchange", msgs: []Message{system, q1, a1}},
	{name: "no system", msgs: []Message{q1, a1}},
	{name: "multi-turn", msgs: []Message{system, q1, a1, q2, a2}},
	{name: "multi-turn prompt", msgs: []Message{q1, a1, q2}, gen: true},
	{name: "padded answer", msgs: []Message{q1, {"assistant", "\n\nspaced answer 你好 😀 \n"}}},
	{name: "reasoning", msgs: []Message{q1, {"assistant", "<think>\nAdd them.\n</think>\n\nIt is \\boxed{4}."}}},
	{name: "reasoning earlier turn", msgs: []Message{q1, {"assistant", "<think>\nAdd.\n</think>\n\n4"}, q2, a2}},
	{name: "combining marks", msgs: []Message{{"user", "Is cafe\u0301 NFC?"}, {"assistant", "No: cafe\u0301 becomes caf\u00e9, x\u0302 stays."}, q2, a2}},
	{name: "no thinking", msgs: []Message{q1}, gen: true, vars: map[string]any{"enable_thinking": false}},
}

// chatModel is a tokenizer with a chat template, and the reference model
// whose ids it must match.
type chatModel struct {
	name, ref string
	tok       *Tokenizer
	date      time.Time
}

func chatModels(t *testing.T) []chatModel {
	needReference(t)
	date := time.Date(2031, 3, 9, 15, 4, 5, 0, time.UTC) // not today: the clock must not leak in
	return []chatModel{
		{name: "qwen3", ref: "qwen3", tok: loadRef(t, "qwen3")},
		{name: "llama3_1", ref: "llama3_1", tok: loadRef(t, "llama3_1")},
		{name: "llama3", ref: "llama3", tok: loadRef(t, "llama3")},
		{name: "llama3_2", ref: "llama3_1", tok: withTemplate(t, "llama3_1", "llama3_2_chat_template.jinja"), date: date},
		// The llama2 package ships no chat template: Llama 2 chat's own.
		{name: "llama2", ref: "llama2", tok: withTemplate(t, "llama2", "llama2_chat_template.jinja")},
		{name: "gemma3", ref: "gemma3", tok: loadRef(t, "gemma3")},
	}
}

// withTemplate loads a reference model with another chat template (Llama 3.2
// shares Llama 3.1's tokenizer; its template prints today's date).
func withTemplate(t *testing.T, name, templateFile string) *Tokenizer {
	t.Helper()
	needReference(t)
	src, err := os.ReadFile(filepath.Join("testdata", templateFile))
	if err != nil {
		t.Fatal(err)
	}
	cfgBytes, err := os.ReadFile(filepath.Join(modelDir(name), "tokenizer_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(cfgBytes, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["chat_template"] = string(src)
	cfgBytes, err = json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tj, err := os.Open(filepath.Join(modelDir(name), "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer tj.Close()
	tok, err := Load(tj, bytes.NewReader(cfgBytes))
	if err != nil {
		t.Fatalf("load %s with %s: %v", name, templateFile, err)
	}
	return tok
}

// refContext is the template context @huggingface/jinja gets for a render.
func refContext(tok *Tokenizer, msgs []Message, gen bool, vars map[string]any, date time.Time) map[string]any {
	ctx := map[string]any{"messages": msgs, "add_generation_prompt": gen}
	for k, v := range tok.tokens {
		ctx[k] = v
	}
	for k, v := range vars {
		ctx[k] = v
	}
	if !date.IsZero() {
		ctx["__date"] = date.Format("2006-01-02")
	}
	return ctx
}

func TestChatTemplateMatchesReference(t *testing.T) {
	for _, m := range chatModels(t) {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			// One node call renders every conversation and every prompt
			// before each assistant message.
			var contexts []map[string]any
			for _, c := range conversations {
				contexts = append(contexts, refContext(m.tok, c.msgs, c.gen, c.vars, m.date))
				for i, msg := range c.msgs {
					if msg.Role == "assistant" {
						contexts = append(contexts, refContext(m.tok, c.msgs[:i], true, c.vars, m.date))
					}
				}
			}
			var rendered []string
			node(t, map[string]any{"op": "render", "template": m.tok.ChatTemplate(), "contexts": contexts}, &rendered)
			var texts []string
			next := 0
			var chats []*Chat
			for _, c := range conversations {
				chat, err := m.tok.ApplyChatTemplate(c.msgs, ChatOptions{AddGenerationPrompt: c.gen, Date: m.date, Vars: c.vars})
				if err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				if want := rendered[next]; chat.Text != want {
					t.Errorf("%s: text\n got %q\nwant %q", c.name, chat.Text, want)
				}
				texts = append(texts, rendered[next])
				chats = append(chats, chat)
				next++
				var prompts []string
				for _, msg := range c.msgs {
					if msg.Role == "assistant" {
						prompts = append(prompts, rendered[next])
						next++
					}
				}
				checkAssistantSpans(t, c, m.tok, chat, prompts)
			}
			want := refEncode(t, m.ref, texts)
			for i, c := range conversations {
				if !slices.Equal(chats[i].IDs, want[i]) {
					t.Errorf("%s: ids\n got %v\nwant %v", c.name, chats[i].IDs, want[i])
				}
			}
		})
	}
}

// checkAssistantSpans checks that each assistant span starts where the
// reference prompt for the conversation up to that message ends, holds the
// message's answer and ends with the end-of-turn token, and that Mask is
// exactly the spans.
func checkAssistantSpans(t *testing.T, c conversation, tok *Tokenizer, chat *Chat, prompts []string) {
	t.Helper()
	if len(chat.Assistant) != len(prompts) {
		t.Fatalf("%s: %d assistant spans, want %d", c.name, len(chat.Assistant), len(prompts))
	}
	eot := string(tok.DecodeBytes([]int{tok.Special().EndOfTurn}))
	mask := make([]bool, len(chat.IDs))
	j := 0
	for _, msg := range c.msgs {
		if msg.Role != "assistant" {
			continue
		}
		sp := chat.Assistant[j]
		prompt := prompts[j]
		if tok.nfc {
			prompt = norm.NFC.String(prompt)
		}
		if tok.sp != nil {
			// SentencePiece-style BPE prepends "▁" to the text after each
			// special token (Hugging Face's legacy behaviour), which decodes
			// as a space: the tokens before the span are the prompt's own.
			prompt = tok.Decode(tok.Encode(prompt))
		}
		if before := tok.Decode(chat.IDs[:sp.Start]); !strings.HasPrefix(chat.Text, prompts[j]) || before != prompt {
			t.Errorf("%s: span %d starts after %q, want the prompt %q", c.name, j, before, prompts[j])
		}
		got := tok.Decode(chat.IDs[sp.Start:sp.End])
		answer := strings.TrimSpace(msg.Content)
		if tok.nfc {
			answer = norm.NFC.String(answer)
		}
		if k := strings.LastIndex(answer, "</think>"); k >= 0 {
			answer = strings.TrimSpace(answer[k+len("</think>"):])
		}
		if !strings.HasSuffix(got, eot) || !strings.Contains(got, answer) {
			t.Errorf("%s: span %d is %q, want the answer %q and %s", c.name, j, got, answer, eot)
		}
		for k := sp.Start; k < sp.End; k++ {
			mask[k] = true
		}
		j++
	}
	if !slices.Equal(chat.Mask, mask) {
		t.Errorf("%s: Mask is not the assistant spans", c.name)
	}
}

// pythonOnly are conversations where @huggingface/jinja 0.5.11 departs from
// Python: its lstrip(chars)/rstrip(chars) strip all whitespace whatever the
// argument, and Qwen3's template calls content.lstrip('\n').
var pythonOnly = []conversation{
	{name: "answer starts with spaces", msgs: []Message{q1, {"assistant", "\n  indented answer"}}},
	{name: "reasoning with spaces", msgs: []Message{q1, {"assistant", "<think>\n  step\n</think>\n \n done"}}},
}

// TestChatTemplateMatchesPython renders every conversation as Hugging Face
// transformers does, with Python's jinja2.
func TestChatTemplateMatchesPython(t *testing.T) {
	for _, m := range chatModels(t) {
		t.Run(m.name, func(t *testing.T) {
			convs := append(slices.Clone(conversations), pythonOnly...)
			var contexts []map[string]any
			for _, c := range convs {
				contexts = append(contexts, refContext(m.tok, c.msgs, c.gen, c.vars, m.date))
			}
			var want []string
			python(t, map[string]any{"op": "render", "template": m.tok.ChatTemplate(), "contexts": contexts}, &want)
			for i, c := range convs {
				got, err := m.tok.RenderChat(c.msgs, ChatOptions{AddGenerationPrompt: c.gen, Date: m.date, Vars: c.vars})
				if err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				if got != want[i] {
					t.Errorf("%s: text\n got %q\nwant %q (jinja2)", c.name, got, want[i])
				}
			}
		})
	}
}

func TestChatTemplateDate(t *testing.T) {
	tok := withTemplate(t, "llama3_1", "llama3_2_chat_template.jinja")
	_, err := tok.RenderChat([]Message{q1}, ChatOptions{AddGenerationPrompt: true})
	if err == nil || !strings.Contains(err.Error(), "ChatOptions.Date") {
		t.Errorf("render without a date: error %v, want one naming ChatOptions.Date", err)
	}
	text, err := tok.RenderChat([]Message{q1}, ChatOptions{AddGenerationPrompt: true, Date: time.Date(2030, 2, 3, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "Today Date: 03 Feb 2030\n") {
		t.Errorf("rendered text does not carry the given date:\n%s", text)
	}
}

func TestTemplateHash(t *testing.T) {
	for _, name := range []string{"qwen3", "llama3_1", "gemma3"} {
		tok := loadRef(t, name)
		raw, err := os.ReadFile(filepath.Join(modelDir(name), "tokenizer_config.json"))
		if err != nil {
			t.Fatal(err)
		}
		var cfg struct {
			ChatTemplate string `json:"chat_template"`
		}
		if err := json.Unmarshal(raw, &cfg); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(cfg.ChatTemplate))
		if got, want := tok.TemplateHash(), hex.EncodeToString(sum[:]); got != want {
			t.Errorf("%s: TemplateHash() = %s, want %s", name, got, want)
		}
	}
}

func TestNoChatTemplate(t *testing.T) {
	tj := `{"model": {"type": "BPE", "vocab": ` + byteVocab() + `, "merges": []}}`
	tok, err := Load(strings.NewReader(tj), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tok.ApplyChatTemplate([]Message{q1}, ChatOptions{}); err != ErrNoChatTemplate {
		t.Errorf("ApplyChatTemplate error = %v, want ErrNoChatTemplate", err)
	}
	if got := tok.Decode(tok.Encode("plain bytes ✓")); got != "plain bytes ✓" {
		t.Errorf("round trip through a merge-less vocabulary = %q", got)
	}
}

// TestGemma3ChatSpans checks what SFT and the sampler take from Gemma 3's
// template: assistant turns are "model" turns, each span is the trimmed
// answer and the <end_of_turn> that closes it (not the "\n" after), the
// generation prompt is "<start_of_turn>model\n", the system prompt is folded
// into the first user turn, and roles that do not alternate are refused.
func TestGemma3ChatSpans(t *testing.T) {
	tok := loadRef(t, "gemma3")
	eot, _ := tok.TokenID("<end_of_turn>")
	if eot != tok.Special().EndOfTurn || !slices.Contains(tok.StopIDs(), eot) {
		t.Fatalf("<end_of_turn> (%d): EndOfTurn %d, StopIDs %v", eot, tok.Special().EndOfTurn, tok.StopIDs())
	}
	answer := Message{"assistant", "  \n" + a2.Content + "\n\n"}
	chat, err := tok.ApplyChatTemplate([]Message{system, q1, a1, q2, answer}, ChatOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := "<start_of_turn>user\n" + system.Content + "\n\n" + q1.Content + "<end_of_turn>\n"; !strings.Contains(chat.Text, want) {
		t.Errorf("system prompt not folded into the first user turn:\n%s", chat.Text)
	}
	header := tok.Encode("<start_of_turn>model\n")
	for i, a := range []Message{a1, answer} {
		sp := chat.Assistant[i]
		if got, want := tok.Decode(chat.IDs[sp.Start:sp.End]), strings.TrimSpace(a.Content)+"<end_of_turn>"; got != want {
			t.Errorf("span %d = %q, want %q", i, got, want)
		}
		if chat.IDs[sp.End-1] != eot || chat.IDs[sp.End] != tok.Encode("\n")[0] {
			t.Errorf("span %d does not end at <end_of_turn> followed by a newline", i)
		}
		if !slices.Equal(chat.IDs[sp.Start-len(header):sp.Start], header) {
			t.Errorf("span %d does not follow the model header %v: %v", i, header, chat.IDs[:sp.Start])
		}
	}
	prompt, err := tok.ApplyChatTemplate([]Message{q1, a1, q2}, ChatOptions{AddGenerationPrompt: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(prompt.Text, "<end_of_turn>\n<start_of_turn>model\n") || !slices.Equal(prompt.IDs[len(prompt.IDs)-len(header):], header) {
		t.Errorf("generation prompt ends %q", prompt.Text[max(0, len(prompt.Text)-40):])
	}
	if prompt.IDs[0] != tok.Special().BOS {
		t.Errorf("prompt starts with %d, want <bos> %d", prompt.IDs[0], tok.Special().BOS)
	}
	_, err = tok.ApplyChatTemplate([]Message{q1, q2}, ChatOptions{})
	if err == nil || !strings.Contains(err.Error(), "alternate") {
		t.Errorf("two user turns in a row: error %v, want the template's alternation error", err)
	}
}
