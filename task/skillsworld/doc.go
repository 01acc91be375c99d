// Package skillsworld is statjob's demo world: a small synthetic math task
// in the MATH data layout, a teacher that knows it, and a tiny base student
// that lacks some of its skills, so that the whole STAT pipeline runs
// offline on a CPU in minutes and shows what it claims.
package skillsworld
