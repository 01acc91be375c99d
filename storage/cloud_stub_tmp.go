package storage

import (
	"context"
	"fmt"
)

func openGCS(ctx context.Context, c Config, loc location) (Store, error) {
	return nil, fmt.Errorf("open %s: gs:// not available yet", c.Root)
}

func openS3(ctx context.Context, c Config, loc location) (Store, error) {
	return nil, fmt.Errorf("open %s: s3:// not available yet", c.Root)
}
