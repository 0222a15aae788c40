// Package visibility names the search attributes ferry's workflows carry, so
// the Temporal web UI (and `temporal workflow list --query`) can filter runs by
// job, source, target and phase, and registers them on a namespace.
//
// The package depends only on the Temporal SDK: workflow code imports it for
// the typed keys, `ferry server` and tests call Register.
package visibility

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
)

// Search attribute names. All are Keyword attributes (exact match).
const (
	// Job is the ferry job name, e.g. "share01".
	Job = "FerryJob"
	// Source is the job's source, "host:dataset".
	Source = "FerrySource"
	// Target is the job's target, "host:dataset".
	Target = "FerryTarget"
	// Phase is the run's current phase (snapshot, greet, stream, ...).
	Phase = "FerryPhase"
)

// Typed keys for workflow.UpsertTypedSearchAttributes and
// client.StartWorkflowOptions.TypedSearchAttributes.
var (
	FerryJob    = temporal.NewSearchAttributeKeyKeyword(Job)
	FerrySource = temporal.NewSearchAttributeKeyKeyword(Source)
	FerryTarget = temporal.NewSearchAttributeKeyKeyword(Target)
	FerryPhase  = temporal.NewSearchAttributeKeyKeyword(Phase)
)

// Attributes maps every ferry search attribute to its indexed type.
func Attributes() map[string]enumspb.IndexedValueType {
	return map[string]enumspb.IndexedValueType{
		Job:    enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		Source: enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		Target: enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		Phase:  enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	}
}

// readyTimeout bounds how long Register waits for newly added attributes to
// become usable in visibility queries.
const readyTimeout = 15 * time.Second

// Register adds ferry's search attributes to namespace. It is idempotent:
// attributes already present with the right type are left alone. An attribute
// present with another type is an error that names it (a namespace can never
// hold two attributes of one name, so it must be renamed or removed first).
//
// When it adds attributes, Register waits until the frontend accepts a
// visibility query that uses them, so that a workflow started right after it
// returns can carry them (SQL-backed servers refresh their namespace cache
// every couple of seconds).
func Register(ctx context.Context, c client.Client, namespace string) error {
	if namespace == "" {
		return errors.New("visibility: namespace is required")
	}
	ops := c.OperatorService()
	existing, err := ops.ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return fmt.Errorf("list search attributes of namespace %q: %w", namespace, err)
	}

	missing := map[string]enumspb.IndexedValueType{}
	for _, name := range names() {
		want := Attributes()[name]
		have, ok := existing.GetCustomAttributes()[name]
		if !ok {
			have, ok = existing.GetSystemAttributes()[name]
			if ok {
				return fmt.Errorf("search attribute %s is a system attribute of namespace %q; ferry cannot use it", name, namespace)
			}
		}
		switch {
		case !ok:
			missing[name] = want
		case have != want:
			return fmt.Errorf("search attribute %s in namespace %q has type %s, ferry needs %s: "+
				"remove it (temporal operator search-attribute remove --namespace %s --name %s) "+
				"or use another namespace, then start ferry again",
				name, namespace, typeName(have), typeName(want), namespace, name)
		}
	}
	if len(missing) == 0 {
		return nil
	}

	_, err = ops.AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace:        namespace,
		SearchAttributes: missing,
	})
	var exists *serviceerror.AlreadyExists
	if err != nil && !errors.As(err, &exists) { // a concurrent Register added them first
		return fmt.Errorf("add search attributes %s to namespace %q: %w", strings.Join(sortedKeys(missing), ", "), namespace, err)
	}
	return waitUsable(ctx, c, namespace)
}

// waitUsable polls until a visibility query naming every ferry attribute is
// accepted, i.e. the frontend's namespace cache knows them.
func waitUsable(ctx context.Context, c client.Client, namespace string) error {
	var clauses []string
	for _, name := range names() {
		clauses = append(clauses, name+" = 'ferry-probe'")
	}
	query := strings.Join(clauses, " AND ")
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for {
		_, err := c.WorkflowService().CountWorkflowExecutions(ctx, &workflowservice.CountWorkflowExecutionsRequest{
			Namespace: namespace,
			Query:     query,
		})
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("search attributes added to namespace %q but not yet usable: %w", namespace, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func names() []string { return sortedKeys(Attributes()) }

func sortedKeys(m map[string]enumspb.IndexedValueType) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// typeName renders INDEXED_VALUE_TYPE_KEYWORD as "Keyword", as the CLI does.
func typeName(t enumspb.IndexedValueType) string {
	s := strings.TrimPrefix(t.String(), "INDEXED_VALUE_TYPE_")
	if s == "" {
		return t.String()
	}
	parts := strings.Split(strings.ToLower(s), "_")
	for i, p := range parts {
		if p != "" {
			parts[i] = strings.ToUpper(p[:1]) + p[1:]
		}
	}
	return strings.Join(parts, "")
}
