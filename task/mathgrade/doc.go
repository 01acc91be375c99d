// Package mathgrade extracts final answers from model responses and decides
// whether two math answers are equal.
package mathgrade
