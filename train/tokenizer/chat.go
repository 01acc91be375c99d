package tokenizer

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ardanlabs/jinja"
)

// ErrNoChatTemplate is returned by ApplyChatTemplate when tokenizer_config.json
// has no chat_template.
var ErrNoChatTemplate = errors.New("tokenizer has no chat template")

// Message is one turn of a conversation.
type Message struct {
	Role    string `json:"role"` // system, user or assistant
	Content string `json:"content"`
}

// ChatOptions are the inputs of a chat template besides the messages.
type ChatOptions struct {
	// AddGenerationPrompt ends the text with the header of an assistant turn.
	AddGenerationPrompt bool
	// Date is "today" for templates that print it through strftime_now
	// (Llama 3.2). A template that calls strftime_now fails while it is
	// zero: a run's date comes from its spec, never from the clock. (Llama
	// 3.1's template prints its own default unless Vars sets date_string.)
	Date time.Time
	// Vars are further template variables, e.g. "enable_thinking": false.
	Vars map[string]any
}

// Chat is a rendered conversation.
type Chat struct {
	Text string
	IDs  []int
	// Assistant are the token ranges the assistant wrote, each one
	// assistant message with its end-of-turn token, in message order.
	Assistant []Span
	// Mask is true for the tokens in Assistant: SFT's loss mask.
	Mask []bool
}

// Span is the token range [Start, End) of Chat.IDs.
type Span struct{ Start, End int }

type chatTemplate struct {
	source string
	hash   string
	tmpl   *jinja.Template
	eot    string // text of the end-of-turn token
}

// configFile is the part of tokenizer_config.json this package reads.
type configFile struct {
	BOS          tokenName       `json:"bos_token"`
	EOS          tokenName       `json:"eos_token"`
	Pad          tokenName       `json:"pad_token"`
	Unk          tokenName       `json:"unk_token"`
	ChatTemplate json.RawMessage `json:"chat_template"`
}

// tokenName is a special token named as a string or as {"content": "..."}.
type tokenName string

func (n *tokenName) UnmarshalJSON(b []byte) error {
	var s *string
	if err := json.Unmarshal(b, &s); err == nil {
		if s != nil {
			*n = tokenName(*s)
		}
		return nil
	}
	var o struct {
		Content string `json:"content"`
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return fmt.Errorf("special token: want a string or {\"content\": ...}: %w", err)
	}
	*n = tokenName(o.Content)
	return nil
}

// endOfTurnTokens are the end-of-turn markers of the chat formats in use.
var endOfTurnTokens = []string{"<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|eot|>"}

func (t *Tokenizer) configure(c *configFile) error {
	t.tokens = map[string]string{}
	ids := map[string]*int{"bos_token": &t.special.BOS, "eos_token": &t.special.EOS, "pad_token": &t.special.Pad}
	names := map[string]tokenName{"bos_token": c.BOS, "eos_token": c.EOS, "pad_token": c.Pad, "unk_token": c.Unk}
	for field, name := range names {
		if name == "" {
			if p := ids[field]; p != nil {
				*p = -1
			}
			continue
		}
		id, ok := t.TokenID(string(name))
		if !ok {
			return fmt.Errorf("%s %q: not a token", field, name)
		}
		if p := ids[field]; p != nil {
			*p = id
		}
		t.tokens[field] = string(name)
	}
	if t.special.Pad < 0 {
		t.special.Pad = t.special.EOS
	}
	t.special.EndOfTurn = t.special.EOS
	src, err := templateSource(c.ChatTemplate)
	if err != nil {
		return err
	}
	if src == "" {
		return nil
	}
	if err := t.SetChatTemplate(src); err != nil {
		return fmt.Errorf("chat_template: %w", err)
	}
	return nil
}

// ChatTemplateFile is where transformers (4.51 on) saves the chat template
// beside tokenizer_config.json; when a checkpoint has one it replaces the
// config's chat_template, as transformers reads it.
const ChatTemplateFile = "chat_template.jinja"

// SetChatTemplate makes src (Jinja) the chat template, replacing the one
// tokenizer_config.json gave, and finds the end-of-turn token it uses.
func (t *Tokenizer) SetChatTemplate(src string) error {
	tmpl, err := jinja.Compile(src)
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(src))
	t.chat = &chatTemplate{source: src, hash: hex.EncodeToString(sum[:]), tmpl: tmpl}
	t.special.EndOfTurn = t.special.EOS
	for _, eot := range endOfTurnTokens {
		if id, ok := t.added.ids[eot]; ok && strings.Contains(src, eot) {
			t.special.EndOfTurn = id
			break
		}
	}
	if t.special.EndOfTurn >= 0 {
		t.chat.eot = string(t.idBytes[t.special.EndOfTurn])
	}
	return nil
}

// templateSource reads chat_template: a string, or a list of named templates
// of which "default" is used.
func templateSource(raw json.RawMessage) (string, error) {
	if isNull(raw) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var named []struct {
		Name     string `json:"name"`
		Template string `json:"template"`
	}
	if err := json.Unmarshal(raw, &named); err != nil {
		return "", fmt.Errorf("chat_template: want a string or a list of {name, template}: %w", err)
	}
	for _, n := range named {
		if n.Name == "default" {
			return n.Template, nil
		}
	}
	return "", fmt.Errorf("chat_template: no template named \"default\"")
}

// TemplateHash is the hex sha256 of the chat template's text ("" without one).
func (t *Tokenizer) TemplateHash() string {
	if t.chat == nil {
		return ""
	}
	return t.chat.hash
}

// ChatTemplate is the chat template's Jinja source ("" without one).
func (t *Tokenizer) ChatTemplate() string {
	if t.chat == nil {
		return ""
	}
	return t.chat.source
}

// RenderChat renders the chat template to text.
func (t *Tokenizer) RenderChat(msgs []Message, opts ChatOptions) (string, error) {
	if t.chat == nil {
		return "", ErrNoChatTemplate
	}
	list := make([]jinja.Value, len(msgs))
	for i, m := range msgs {
		d := jinja.NewDict()
		d.AsDict().Set("role", jinja.NewString(m.Role))
		d.AsDict().Set("content", jinja.NewString(m.Content))
		list[i] = d
	}
	data := make(map[string]jinja.Value, len(t.tokens)+len(opts.Vars)+4)
	for k, v := range opts.Vars {
		data[k] = jinja.FromGoValue(v)
	}
	for k, v := range t.tokens {
		data[k] = jinja.NewString(v)
	}
	data["messages"] = jinja.NewList(list)
	data["add_generation_prompt"] = jinja.NewBool(opts.AddGenerationPrompt)
	date := opts.Date
	data["strftime_now"] = jinja.NewCallable("strftime_now", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		if date.IsZero() {
			return jinja.Undefined(), errors.New("the chat template prints today's date: set ChatOptions.Date")
		}
		if len(args) != 1 || !args[0].IsString() {
			return jinja.Undefined(), errors.New("strftime_now: want one format string")
		}
		return jinja.NewString(strftime(date, args[0].AsString())), nil
	})
	out, err := t.chat.tmpl.RenderValues(data)
	if err != nil {
		return "", fmt.Errorf("render chat template: %w", err)
	}
	return out, nil
}

// ApplyChatTemplate renders msgs, encodes the text and marks the tokens each
// assistant message wrote: from the end of the prompt the template would give
// for the conversation up to that message (or, for templates that rewrite
// earlier turns, the message's content) through the next end-of-turn token.
func (t *Tokenizer) ApplyChatTemplate(msgs []Message, opts ChatOptions) (*Chat, error) {
	text, err := t.RenderChat(msgs, opts)
	if err != nil {
		return nil, err
	}
	var byteSpans [][2]int
	cursor := 0
	for i, m := range msgs {
		if m.Role != "assistant" {
			continue
		}
		popts := opts
		popts.AddGenerationPrompt = true
		prompt, err := t.RenderChat(msgs[:i], popts)
		if err != nil {
			return nil, err
		}
		start := len(prompt)
		if !strings.HasPrefix(text, prompt) || start < cursor {
			k := strings.Index(text[cursor:], strings.TrimSpace(m.Content))
			if k < 0 {
				return nil, fmt.Errorf("chat template: message %d: assistant content not found in the rendered text", i)
			}
			start = cursor + k
		}
		from := start
		if k := strings.Index(text[start:], strings.TrimSpace(m.Content)); k >= 0 {
			from = start + k + len(strings.TrimSpace(m.Content))
		}
		end := len(text)
		if t.chat.eot != "" {
			k := strings.Index(text[from:], t.chat.eot)
			if k < 0 {
				return nil, fmt.Errorf("chat template: message %d: no %s after the assistant content", i, t.chat.eot)
			}
			end = from + k + len(t.chat.eot)
		}
		byteSpans = append(byteSpans, [2]int{start, end})
		cursor = end
	}
	ids, offsets := t.encode(text, true)
	c := &Chat{Text: text, IDs: ids, Mask: make([]bool, len(ids))}
	k := 0
	for _, bs := range byteSpans {
		for k < len(ids) && offsets[k] < bs[0] {
			k++
		}
		s := k
		for k < len(ids) && offsets[k] < bs[1] {
			c.Mask[k] = true
			k++
		}
		c.Assistant = append(c.Assistant, Span{Start: s, End: k})
	}
	return c, nil
}

// strftimeLayouts are the strftime directives chat templates use, as Go
// time layouts.
var strftimeLayouts = map[byte]string{
	'd': "02", 'm': "01", 'Y': "2006", 'y': "06", 'b': "Jan", 'B': "January",
	'a': "Mon", 'A': "Monday", 'H': "15", 'M': "04", 'S': "05",
}

// strftime formats date with a Python strftime format.
func strftime(date time.Time, format string) string {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		if format[i] != '%' || i+1 == len(format) {
			b.WriteByte(format[i])
			continue
		}
		i++
		switch layout, ok := strftimeLayouts[format[i]]; {
		case ok:
			b.WriteString(date.Format(layout))
		case format[i] == 'j':
			fmt.Fprintf(&b, "%03d", date.YearDay())
		case format[i] == '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			b.WriteByte(format[i])
		}
	}
	return b.String()
}
