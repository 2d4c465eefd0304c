package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/alecthomas/kong"
)

// completeCommand is the hidden command the completion scripts call with the words typed so
// far (the last one being completed); it prints the candidates, one a line. The candidates
// come from the same kong model that parses the command line, so they cannot drift from it.
const completeCommand = "__complete"

type completionCmd struct {
	Shell string `arg:"" enum:"bash,zsh,fish" help:"bash, zsh or fish."`
}

func (c *completionCmd) Run(e *env) error {
	_, err := fmt.Fprint(e.stdout, map[string]string{"bash": bashCompletion, "zsh": zshCompletion, "fish": fishCompletion}[c.Shell])
	return err
}

const bashCompletion = `# consumer completion for bash: source <(consumer completion bash)
_consumer() {
  local IFS=$'\n'
  COMPREPLY=($(compgen -W "$(consumer __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null)" -- "${COMP_WORDS[COMP_CWORD]}"))
  [[ ${#COMPREPLY[@]} -eq 0 ]] && COMPREPLY=($(compgen -f -- "${COMP_WORDS[COMP_CWORD]}"))
}
complete -F _consumer consumer
`

const zshCompletion = `#compdef consumer
# consumer completion for zsh: consumer completion zsh > "${fpath[1]}/_consumer"
_consumer() {
  local -a c
  c=("${(@f)$(consumer __complete "${(@)words[2,CURRENT]}" 2>/dev/null)}")
  if (( ${#c[@]} )) && [[ -n "${c[1]}" ]]; then
    compadd -a c
  else
    _files
  fi
}
compdef _consumer consumer
`

const fishCompletion = `# consumer completion for fish: consumer completion fish > ~/.config/fish/completions/consumer.fish
complete -c consumer -f -a '(consumer __complete (commandline -opc)[2..-1] (commandline -ct))'
`

// complete writes the candidates for the last of words, given the ones before it.
func complete(parser *kong.Kong, words []string, w io.Writer) {
	if len(words) == 0 {
		words = []string{""}
	}
	node := parser.Model.Node
	var pending *kong.Flag // a flag whose value is the next word
	for _, word := range words[:len(words)-1] {
		if pending != nil {
			pending = nil
			continue
		}
		if strings.HasPrefix(word, "-") {
			if f := findFlag(node, word); f != nil && !f.IsBool() && !strings.Contains(word, "=") {
				pending = f
			}
			continue
		}
		for _, ch := range node.Children {
			if ch.Type == kong.CommandNode && !ch.Hidden && ch.Name == word {
				node = ch
				break
			}
		}
	}
	last := words[len(words)-1]
	var out []string
	switch {
	case pending != nil:
		out = pending.EnumSlice()
	case strings.HasPrefix(last, "-"):
		for n := node; n != nil; n = n.Parent {
			for _, f := range n.Flags {
				if !f.Hidden {
					out = append(out, "--"+f.Name)
				}
			}
		}
	default:
		for _, ch := range node.Children {
			if ch.Type == kong.CommandNode && !ch.Hidden {
				out = append(out, ch.Name)
			}
		}
		for _, p := range node.Positional {
			out = append(out, p.EnumSlice()...)
		}
	}
	for _, c := range out {
		if strings.HasPrefix(c, last) {
			fmt.Fprintln(w, c)
		}
	}
}

// findFlag is the flag word names on node or an ancestor.
func findFlag(node *kong.Node, word string) *kong.Flag {
	name, _, _ := strings.Cut(strings.TrimLeft(word, "-"), "=")
	for n := node; n != nil; n = n.Parent {
		for _, f := range n.Flags {
			if f.Name == name || (f.Short != 0 && strings.TrimLeft(word, "-") == string(f.Short)) {
				return f
			}
		}
	}
	return nil
}
