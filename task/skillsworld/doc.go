// Package skillsworld is statjob's demo world: a small synthetic math task
// in the MATH data layout, a teacher that knows it, and a tiny base student
// that lacks some of its skills, so that the whole STAT pipeline runs
// offline on a CPU in minutes and shows what it claims: the student gets
// better at the skills it was missing.
//
// The world (World) has three subjects of two skills, each a handful of
// phrasings over single digits with a one-line worked solution:
//
//	Arithmetic  addition        What is 3 + 5?                    3 + 5 = 8. \boxed{8}
//	            doubling        What is twice 4? (6 phrasings)    4 + 4 = 8. \boxed{8}
//	Counting    predecessor     What number precedes 6? (6)       6 - 1 = 5. \boxed{5}
//	            successor       What number follows 6? (6)        6 + 1 = 7. \boxed{7}
//	Comparison  larger_number   Which is larger, 3 or 7? (2)      7 > 3. \boxed{7}
//	            smaller_number  Which is smaller, 3 or 7? (2)     3 < 7. \boxed{3}
//
// Each skill's Related skill is the other one of its subject: the teacher
// names both when it diagnoses a failure, so a STAT training set holds the
// missing skill and the one beside it.
//
// Write lays it out as the pipeline's loaders expect (package problems):
// math/train.jsonl and math/test.jsonl (unique_id "train/<subject>/<n>.json",
// problem, level, type, solution), skills/math_skills.json and
// skills/math_skill_map.jsonl. Every skill's questions are shuffled by the
// seed and split 60/40 into train and test, so the two never share a
// question.
//
// Oracle is the teacher: an http.Handler speaking OpenAI's chat
// completions wire format that answers STAT's five prompts (package
// teacher) correctly for this world.
//
// The base student (WriteStudent; files embedded from student/) is a tiny
// Qwen2 model (hidden 64, 2 layers, 4 heads / 2 KV heads, tied embeddings,
// f32, 93k parameters) with the byte-level test tokenizer of train/sft,
// pre-trained from random weights on every question of the three Trained
// skills and none of the Unseen ones (doubling, successor,
// smaller_number), in the prompt format the stages use (Prompt, through
// the tokenizer's chat template). It was made in two runs (36 epochs from
// random weights, then 20 more with a fresh warm-up and cosine schedule):
//
//	go run ./task/skillsworld/cmd/pretrain -out /tmp/base
//	go run ./task/skillsworld/cmd/pretrain -init /tmp/base -epochs 20 -out task/skillsworld/student
//
// and its accuracy per skill is in BENCHMARKS.md ("Demo world").
package skillsworld
