// Package terraform holds the Terraform (OpenTofu) root modules that create
// the cloud setup statjob submit needs: gcp/ (Cloud Batch, Vertex AI) and
// aws/ (AWS Batch). The package has no Go code; its test checks the modules
// without tofu or providers: every file parses and is formatted, every
// resource and data block fits the provider schema in testdata/schema.json,
// and every variable is declared and documented. scripts/terraform-check.sh
// runs the real tofu fmt, validate and test, and regenerates that schema.
package terraform
