package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// object is one rendered document, decoded into its API type.
type object struct {
	kind, name string
	source     string // helm's "# Source:" comment, for messages
	value      any    // *appsv1.Deployment, *corev1.Service, ...
}

// types are the API types the chart may render, by apiVersion and kind. Anything else
// is an error: a new kind must be added here, with its checks.
var types = map[string]func() any{
	"v1/ConfigMap":                           func() any { return new(corev1.ConfigMap) },
	"v1/Service":                             func() any { return new(corev1.Service) },
	"v1/ServiceAccount":                      func() any { return new(corev1.ServiceAccount) },
	"apps/v1/Deployment":                     func() any { return new(appsv1.Deployment) },
	"policy/v1/PodDisruptionBudget":          func() any { return new(policyv1.PodDisruptionBudget) },
	"autoscaling/v2/HorizontalPodAutoscaler": func() any { return new(autoscalingv2.HorizontalPodAutoscaler) },
	"monitoring.coreos.com/v1/ServiceMonitor": func() any {
		return new(monitoringv1.ServiceMonitor)
	},
}

// decodeAll splits a YAML stream into documents and decodes each strictly: an unknown
// field, a duplicate field or a value of the wrong type is an error naming the document.
func decodeAll(r *bufio.Reader) ([]object, error) {
	yr := k8syaml.NewYAMLReader(r)
	var objs []object
	var errs []error
	for {
		doc, err := yr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read YAML: %w", err)
		}
		source := sourceOf(doc)
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", source, err))
			continue
		}
		if tm.APIVersion == "" && tm.Kind == "" {
			if !isEmpty(doc) {
				errs = append(errs, fmt.Errorf("%s: a document without apiVersion and kind", source))
			}
			continue
		}
		newType, ok := types[tm.APIVersion+"/"+tm.Kind]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: %s %s is not a kind the chart renders (add it to chartcheck's types)", source, tm.APIVersion, tm.Kind))
			continue
		}
		v := newType()
		if err := yaml.UnmarshalStrict(doc, v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s does not decode strictly: %w", source, tm.Kind, err))
			continue
		}
		objs = append(objs, object{kind: tm.Kind, name: nameOf(v), source: source, value: v})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(objs) == 0 {
		return nil, errNoObjects
	}
	return objs, nil
}

func nameOf(v any) string {
	if o, ok := v.(metav1.Object); ok {
		return o.GetName()
	}
	return ""
}

// sourceOf returns the template named by helm's "# Source: ..." line, or "a document".
func sourceOf(doc []byte) string {
	for line := range bytes.Lines(doc) {
		if s, ok := bytes.CutPrefix(bytes.TrimSpace(line), []byte("# Source: ")); ok {
			return string(s)
		}
	}
	return "a document"
}

// isEmpty: only comments and blank lines.
func isEmpty(doc []byte) bool {
	for line := range bytes.Lines(doc) {
		l := bytes.TrimSpace(line)
		if len(l) > 0 && l[0] != '#' && !bytes.Equal(l, []byte("---")) {
			return false
		}
	}
	return true
}
