// Package tracing owns tokenhandler's OpenTelemetry tracing: the tracer provider with its
// OTLP/HTTP exporter, configured by the standard OTEL_* variables
// (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_SERVICE_NAME,
// OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG, ...), the
// server span of each request, client spans for calls to the provider and the upstreams,
// and W3C traceparent propagation on those calls.
//
// With tracing off (the default) nothing here is on the request path: New returns nil,
// and a nil *Tracing wraps nothing and starts no span.
//
// No span attribute carries a token, a cookie, a code or a query string: spans record
// methods, routes, paths and status codes only.
package tracing

import (
	"context"
	"fmt"
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
)

var (
	serverKind = trace.WithSpanKind(trace.SpanKindServer)
	clientKind = trace.WithSpanKind(trace.SpanKindClient)
)

// Tracing is an enabled tracer: its provider, tracer and propagator.
type Tracing struct {
	provider   *sdktrace.TracerProvider
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
}

// New starts tracing when enabled (tracing.enabled): an OTLP/HTTP exporter configured
// by the OTEL_* variables, batched, under the sampler OTEL_TRACES_SAMPLER names
// (parent-based always-on by default). It returns nil when tracing is off.
func New(ctx context.Context, enabled bool, version string) (*Tracing, error) {
	if !enabled {
		return nil, nil
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("tracing: otlp exporter: %w", err)
	}
	res, err := resource.Merge(
		resource.NewSchemaless(semconv.ServiceName("tokenhandler"), semconv.ServiceVersion(version)),
		resource.Environment(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
	)
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return &Tracing{
		provider:   tp,
		tracer:     tp.Tracer("github.com/tokenhandler/tokenhandler"),
		propagator: propagation.TraceContext{},
	}, nil
}

// Shutdown flushes the spans still queued and stops the exporter.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.provider.Shutdown(ctx)
}

// Tracer returns the tracer, nil when tracing is off: the packages that take one start
// no span with nil.
func (t *Tracing) Tracer() trace.Tracer {
	if t == nil {
		return nil
	}
	return t.tracer
}

// Handler wraps next in a server span per request, named "METHOD route" (route is a
// bounded label: a route prefix, auth, static or other), continuing a trace the request
// carries in traceparent. With t nil it returns next itself.
func (t *Tracing) Handler(next http.Handler, route string) http.Handler {
	if t == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := t.propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := t.tracer.Start(ctx, r.Method+" "+route, serverKind)
		defer span.End()
		if !span.IsRecording() {
			// Not sampled: the span's context still travels on (traceparent with the
			// sampled flag off), but nothing is recorded, so nothing is built for it.
			next.ServeHTTP(w, r.WithContext(ctx))
			return
		}
		span.SetAttributes(
			semconv.HTTPRequestMethodKey.String(r.Method),
			semconv.HTTPRoute(route),
			semconv.URLPath(r.URL.Path),
		)
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r.WithContext(ctx))
		span.SetAttributes(semconv.HTTPResponseStatusCode(rec.status))
		if rec.status >= 500 {
			span.SetStatus(codes.Error, strconv.Itoa(rec.status))
		}
	})
}

// Transport wraps rt in a client span per request, named "name METHOD", and sends the
// span's context on in traceparent (replacing any the request carried). With t nil it
// returns rt itself.
func (t *Tracing) Transport(rt http.RoundTripper, name string) http.RoundTripper {
	if t == nil {
		return rt
	}
	return &transport{t: t, base: rt, name: name}
}

type transport struct {
	t    *Tracing
	base http.RoundTripper
	name string
}

func (c *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, span := c.t.tracer.Start(req.Context(), c.name+" "+req.Method, clientKind)
	defer span.End()
	recording := span.IsRecording()
	if recording {
		span.SetAttributes(
			semconv.HTTPRequestMethodKey.String(req.Method),
			semconv.ServerAddress(req.URL.Hostname()),
			semconv.URLPath(req.URL.Path),
		)
	}
	// RoundTrippers must not change the request they are given: send a copy, with a
	// header of its own for traceparent.
	out := new(http.Request)
	*out = *req
	out = out.WithContext(ctx)
	out.Header = req.Header.Clone()
	c.t.propagator.Inject(ctx, propagation.HeaderCarrier(out.Header))
	res, err := c.base.RoundTrip(out)
	if !recording {
		return res, err
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "no response")
		return nil, err
	}
	span.SetAttributes(semconv.HTTPResponseStatusCode(res.StatusCode))
	if res.StatusCode >= 500 {
		span.SetStatus(codes.Error, strconv.Itoa(res.StatusCode))
	}
	return res, nil
}

// statusRecorder notes the status a handler wrote. Flush, Hijack and the rest reach the
// underlying writer through Unwrap (http.ResponseController).
type statusRecorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusRecorder) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *statusRecorder) Flush() { _ = http.NewResponseController(w.ResponseWriter).Flush() }

func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }
