package mathgrade

// Cluster groups answers into clusters of equal answers and returns the
// indices of each cluster, largest first (ties: the cluster whose first
// member comes first).
//
// Equality under a tolerance is not transitive (a ≈ b and b ≈ c need not
// give a ≈ c), so clusters are formed by one documented rule, leader
// clustering in input order: answer i joins the first existing cluster
// whose leader (its first member) equals it, else it starts a new cluster.
// Every member therefore equals its leader, clusters never merge, and the
// result depends only on the order of the answers, never on timing. An
// empty answer (nothing extracted) is never equal to anything and stays
// alone.
func (g *Grader) Cluster(answers []string) [][]int {
	prep := make([]Answer, len(answers))
	for i, a := range answers {
		prep[i] = Prepare(a)
	}
	var clusters [][]int
	for i := range prep {
		placed := false
		for c := range clusters {
			if g.EqualPrepared(prep[clusters[c][0]], prep[i]).Equal {
				clusters[c] = append(clusters[c], i)
				placed = true
				break
			}
		}
		if !placed {
			clusters = append(clusters, []int{i})
		}
	}
	// stable sort by size keeps first-appearance order among ties
	for i := 1; i < len(clusters); i++ {
		for j := i; j > 0 && len(clusters[j]) > len(clusters[j-1]); j-- {
			clusters[j], clusters[j-1] = clusters[j-1], clusters[j]
		}
	}
	return clusters
}

// Majority returns the index of the leader of the largest cluster (the
// maj@k answer), its size, and -1, 0 when answers is empty.
func (g *Grader) Majority(answers []string) (leader, size int) {
	cs := g.Cluster(answers)
	if len(cs) == 0 {
		return -1, 0
	}
	return cs[0][0], len(cs[0])
}
