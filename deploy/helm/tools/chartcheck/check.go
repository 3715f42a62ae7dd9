package main

import (
	"fmt"
	"net"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// The product's paths and names the chart must keep.
const (
	container    = "tokenhandler"
	healthzPath  = "/healthz"
	readyzPath   = "/readyz"
	metricsPath  = "/metrics"
	checksumNote = "checksum/config"
)

// secretValueKeys are configuration keys whose value is a secret: never in a ConfigMap.
var secretValueKeys = []string{"oidc.client_secret", "cookies.keys", "redis.url"}

// fileKeys are configuration keys naming files that hold secrets: each must be a file
// mounted from a Secret. token_signing.keys is a list of such paths.
var fileKeys = []string{
	"oidc.client_secret_file", "oidc.client_key_file", "cookies.keys_file", "redis.url_file",
	"dpop.key_file", "tls.cert_file", "tls.key_file", "token_signing.keys",
}

// secretLooking finds secret material that no ConfigMap should hold, whatever its key.
var secretLooking = []*regexp.Regexp{
	regexp.MustCompile(`-----BEGIN [A-Z ]*PRIVATE KEY-----`),
	regexp.MustCompile(`[A-Za-z0-9+/]{43}=:[A-Za-z0-9+/]{43}=`), // a keygen pair
	regexp.MustCompile(`rediss?://[^\s@/]*:[^\s@/]+@`),          // a password in a URL
}

type manifest struct {
	objs     []object
	problems []string
	config   map[string]any // the rendered tokenhandler.yaml
	cfgText  string
	files    map[string]bool // files mounted from Secrets, by path; "dir/" for a whole Secret
}

func newManifest(objs []object) *manifest { return &manifest{objs: objs, files: map[string]bool{}} }

func (m *manifest) addf(format string, args ...any) {
	m.problems = append(m.problems, fmt.Sprintf(format, args...))
}

func all[T any](m *manifest) []*T {
	var out []*T
	for _, o := range m.objs {
		if v, ok := o.value.(*T); ok {
			out = append(out, v)
		}
	}
	return out
}

// check runs every check and returns the problems found.
func (m *manifest) check(require []string) []string {
	for _, k := range require {
		if !slices.ContainsFunc(m.objs, func(o object) bool { return o.kind == k }) {
			m.addf("no %s rendered (required for this values file)", k)
		}
	}
	m.checkMeta()
	deps := all[appsv1.Deployment](m)
	if len(deps) != 1 {
		m.addf("want exactly one Deployment, got %d", len(deps))
		return m.problems
	}
	d := deps[0]
	m.checkDeployment(d)
	for _, cm := range all[corev1.ConfigMap](m) {
		m.checkConfigMap(cm)
	}
	m.checkConfig(d)
	for _, s := range all[corev1.Service](m) {
		m.checkService(s, d)
	}
	for _, sa := range all[corev1.ServiceAccount](m) {
		if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
			m.addf("ServiceAccount %s: automountServiceAccountToken must be false", sa.Name)
		}
	}
	for _, p := range all[policyv1.PodDisruptionBudget](m) {
		m.checkPDB(p, d)
	}
	hpas := all[autoscalingv2.HorizontalPodAutoscaler](m)
	for _, h := range hpas {
		m.checkHPA(h, d)
	}
	for _, sm := range all[monitoringv1.ServiceMonitor](m) {
		m.checkServiceMonitor(sm, d)
	}
	replicas := int32(1)
	if d.Spec.Replicas != nil {
		replicas = *d.Spec.Replicas
	}
	if (replicas > 1 || len(hpas) > 0) && m.configString("redis.url_file") == "" {
		m.addf("Deployment %s: %d replicas (HPA: %v) without redis.url_file: replicas need Redis", d.Name, replicas, len(hpas) > 0)
	}
	if m.configString("session.store") == "redis" && m.configString("redis.url_file") == "" {
		m.addf("session.store: redis without redis.url_file")
	}
	return m.problems
}

// checkMeta: names and labels that the API server would accept.
func (m *manifest) checkMeta() {
	seen := map[string]bool{}
	for _, o := range m.objs {
		meta := o.value.(metav1.Object)
		id := o.kind + "/" + meta.GetName()
		if seen[id] {
			m.addf("%s is rendered twice", id)
		}
		seen[id] = true
		check := validation.IsDNS1123Subdomain
		if o.kind == "Service" {
			check = validation.IsDNS1035Label
		}
		for _, e := range check(meta.GetName()) {
			m.addf("%s: name %q: %s", o.kind, meta.GetName(), e)
		}
		if meta.GetNamespace() != "" {
			m.addf("%s: a hard-coded namespace %q (helm install -n decides)", id, meta.GetNamespace())
		}
		m.checkLabels(id, meta.GetLabels())
	}
}

func (m *manifest) checkLabels(where string, l map[string]string) {
	for k, v := range l {
		for _, e := range validation.IsQualifiedName(k) {
			m.addf("%s: label key %q: %s", where, k, e)
		}
		for _, e := range validation.IsValidLabelValue(v) {
			m.addf("%s: label %s value %q: %s", where, k, v, e)
		}
	}
}

func (m *manifest) checkDeployment(d *appsv1.Deployment) {
	where := "Deployment " + d.Name
	pod := d.Spec.Template.Spec
	m.checkLabels(where+" pod template", d.Spec.Template.Labels)
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		m.addf("%s: the selector does not match the pod template's labels", where)
	}
	if sum := d.Spec.Template.Annotations[checksumNote]; !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(sum) {
		m.addf("%s: the pod template has no %s annotation (a config change would not roll the pods)", where, checksumNote)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		m.addf("%s: automountServiceAccountToken must be false (tokenhandler never calls the API)", where)
	}
	if pod.HostNetwork || pod.HostPID || pod.HostIPC {
		m.addf("%s: host namespaces", where)
	}
	psc := pod.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
		m.addf("%s: no pod securityContext", where)
	}
	if psc.RunAsUser != nil && *psc.RunAsUser == 0 {
		m.addf("%s: runAsUser 0", where)
	}
	if len(pod.Containers) != 1 || pod.Containers[0].Name != container {
		m.addf("%s: want one container %q", where, container)
	}
	for _, c := range slices.Concat(pod.InitContainers, pod.Containers) {
		m.checkContainerSecurity(where, psc, c)
	}
	for _, c := range pod.Containers {
		if c.Name == container {
			m.checkMainContainer(where, pod, c)
		}
	}
}

func (m *manifest) checkContainerSecurity(where string, psc *corev1.PodSecurityContext, c corev1.Container) {
	where += " container " + c.Name
	sc := c.SecurityContext
	if sc == nil {
		m.addf("%s: no securityContext", where)
		return
	}
	nonRoot := psc.RunAsNonRoot
	if sc.RunAsNonRoot != nil {
		nonRoot = sc.RunAsNonRoot
	}
	if nonRoot == nil || !*nonRoot {
		m.addf("%s: runAsNonRoot must be true", where)
	}
	if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
		m.addf("%s: runAsUser 0", where)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		m.addf("%s: readOnlyRootFilesystem must be true", where)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		m.addf("%s: allowPrivilegeEscalation must be false", where)
	}
	if sc.Privileged != nil && *sc.Privileged {
		m.addf("%s: privileged", where)
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		m.addf("%s: capabilities must drop ALL", where)
	} else if len(sc.Capabilities.Add) > 0 {
		m.addf("%s: capabilities added: %v", where, sc.Capabilities.Add)
	}
	seccomp := psc.SeccompProfile
	if sc.SeccompProfile != nil {
		seccomp = sc.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		m.addf("%s: seccompProfile must be RuntimeDefault", where)
	}
	r := c.Resources
	if r.Requests.Cpu().IsZero() || r.Requests.Memory().IsZero() {
		m.addf("%s: resources.requests must set cpu and memory", where)
	}
	if r.Limits.Memory().IsZero() {
		m.addf("%s: resources.limits must set memory", where)
	}
}

// port returns the container port a probe or Service names (by name or number), or 0.
func port(c corev1.Container, p intstr.IntOrString) int32 {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort
		}
	}
	return 0
}

func namedPort(c corev1.Container, name string) int32 {
	return port(c, intstr.FromString(name))
}

func (m *manifest) checkMainContainer(where string, pod corev1.PodSpec, c corev1.Container) {
	where += " container " + c.Name
	admin, http := namedPort(c, "admin"), namedPort(c, "http")
	if admin == 0 || http == 0 {
		m.addf("%s: want container ports named http and admin", where)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		if _, dup := env[e.Name]; dup {
			m.addf("%s: env %s set twice", where, e.Name)
		}
		env[e.Name] = e
		if secretName(e.Name) && (e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
			m.addf("%s: env %s holds a secret: it must come from a secretKeyRef", where, e.Name)
		}
	}
	m.checkListen(where, "TH_ADMIN_LISTEN", env["TH_ADMIN_LISTEN"], admin)
	m.checkListen(where, "TH_LISTEN", env["TH_LISTEN"], http)

	for _, p := range []struct {
		kind, path string
		probe      *corev1.Probe
	}{{"liveness", healthzPath, c.LivenessProbe}, {"readiness", readyzPath, c.ReadinessProbe}} {
		switch {
		case p.probe == nil || p.probe.HTTPGet == nil:
			m.addf("%s: no %s httpGet probe", where, p.kind)
		case p.probe.HTTPGet.Path != p.path:
			m.addf("%s: %s probe on %q, want %s", where, p.kind, p.probe.HTTPGet.Path, p.path)
		case admin == 0 || port(c, p.probe.HTTPGet.Port) != admin:
			m.addf("%s: %s probe not on the admin port", where, p.kind)
		case p.probe.HTTPGet.Scheme != "" && p.probe.HTTPGet.Scheme != corev1.URISchemeHTTP:
			m.addf("%s: %s probe scheme %s: the admin listener is plain HTTP", where, p.kind, p.probe.HTTPGet.Scheme)
		}
	}

	var sleep int64
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		sleep = c.Lifecycle.PreStop.Sleep.Seconds
	}
	if sleep <= 0 {
		m.addf("%s: no lifecycle.preStop.sleep: the pod would get SIGTERM while still in the endpoints", where)
	}
	if pod.TerminationGracePeriodSeconds == nil || *pod.TerminationGracePeriodSeconds <= sleep {
		m.addf("%s: terminationGracePeriodSeconds must be above the preStop sleep (%d s)", where, sleep)
	}

	// The configuration: --config PATH, PATH a key of a mounted ConfigMap.
	i := slices.Index(c.Args, "--config")
	if i < 0 || i+1 >= len(c.Args) {
		m.addf("%s: no --config argument", where)
		return
	}
	cfgPath := c.Args[i+1]
	mounts := m.mounts(pod, c)
	mnt, ok := mounts[path.Dir(cfgPath)]
	if !ok || mnt.ConfigMap == nil {
		m.addf("%s: --config %s is not in a mounted ConfigMap", where, cfgPath)
		return
	}
	for _, cm := range all[corev1.ConfigMap](m) {
		if cm.Name != mnt.ConfigMap.Name {
			continue
		}
		text, ok := cm.Data[path.Base(cfgPath)]
		if !ok {
			m.addf("%s: ConfigMap %s has no key %s", where, cm.Name, path.Base(cfgPath))
			return
		}
		m.cfgText = text
		if err := yaml.Unmarshal([]byte(text), &m.config); err != nil {
			m.addf("ConfigMap %s: %s is not YAML: %v", cm.Name, path.Base(cfgPath), err)
		}
		return
	}
	m.addf("%s: the ConfigMap %s it mounts is not rendered", where, mnt.ConfigMap.Name)
}

// checkListen: the variable listens on every interface (not loopback: the kubelet probes
// the pod's IP) on the named container port.
func (m *manifest) checkListen(where, name string, e corev1.EnvVar, want int32) {
	host, p, err := net.SplitHostPort(e.Value)
	n, _ := strconv.Atoi(p)
	if err != nil || (host != "" && host != "0.0.0.0" && host != "::") || int32(n) != want {
		m.addf("%s: %s=%q, want \":%d\" (every interface, the container port)", where, name, e.Value, want)
	}
}

// secretName: an environment variable that would carry a secret value.
func secretName(name string) bool {
	if strings.HasSuffix(name, "_FILE") {
		return false
	}
	switch name {
	case "TH_OIDC_CLIENT_SECRET", "TH_COOKIES_KEYS", "TH_REDIS_URL",
		// tracing: headers that authenticate to the collector
		"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS":
		return true
	}
	u := strings.ToUpper(name)
	return strings.Contains(u, "SECRET") || strings.Contains(u, "PASSWORD")
}

// mounts returns the container's volumes by mount path, and records in m.files every
// file a Secret provides.
func (m *manifest) mounts(pod corev1.PodSpec, c corev1.Container) map[string]corev1.VolumeSource {
	vols := map[string]corev1.VolumeSource{}
	for _, v := range pod.Volumes {
		vols[v.Name] = v.VolumeSource
	}
	out := map[string]corev1.VolumeSource{}
	for _, vm := range c.VolumeMounts {
		v, ok := vols[vm.Name]
		if !ok {
			m.addf("container %s mounts volume %s, which the pod does not have", c.Name, vm.Name)
			continue
		}
		if !vm.ReadOnly {
			continue // only read-only mounts count as configuration or secrets
		}
		out[vm.MountPath] = v
		switch {
		case v.Secret != nil:
			m.secretFiles(vm.MountPath, v.Secret.Items)
		case v.Projected != nil:
			onlySecrets := true
			for _, s := range v.Projected.Sources {
				onlySecrets = onlySecrets && s.Secret != nil && s.ConfigMap == nil && s.DownwardAPI == nil && s.ServiceAccountToken == nil
			}
			if !onlySecrets {
				continue
			}
			for _, s := range v.Projected.Sources {
				m.secretFiles(vm.MountPath, s.Secret.Items)
			}
		}
	}
	return out
}

func (m *manifest) secretFiles(dir string, items []corev1.KeyToPath) {
	if len(items) == 0 {
		m.files[dir+"/"] = true
	}
	for _, it := range items {
		m.files[path.Join(dir, it.Path)] = true
	}
}

func (m *manifest) fromSecret(p string) bool {
	if m.files[path.Clean(p)] {
		return true
	}
	for d := path.Dir(p); d != "/" && d != "."; d = path.Dir(d) {
		if m.files[d+"/"] {
			return true
		}
	}
	return false
}

// checkConfigMap: no secret material, whatever the key.
func (m *manifest) checkConfigMap(cm *corev1.ConfigMap) {
	for k, v := range cm.Data {
		for _, re := range secretLooking {
			if re.MatchString(v) {
				m.addf("ConfigMap %s: key %s holds what looks like a secret (%s)", cm.Name, k, re)
			}
		}
	}
	if len(cm.BinaryData) > 0 {
		m.addf("ConfigMap %s: binaryData", cm.Name)
	}
}

// lookup returns the value at a dotted key path of the rendered configuration.
func (m *manifest) lookup(key string) (any, bool) {
	var v any = m.config
	for _, k := range strings.Split(key, ".") {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = mm[k]; !ok {
			return nil, false
		}
	}
	return v, true
}

func (m *manifest) configString(key string) string {
	v, _ := m.lookup(key)
	s, _ := v.(string)
	return s
}

// checkConfig: no secret value in the configuration file; every secret file it names is
// mounted from a Secret; listeners come from the environment the chart sets.
func (m *manifest) checkConfig(d *appsv1.Deployment) {
	if m.config == nil {
		if m.cfgText == "" {
			m.addf("Deployment %s: no configuration file found", d.Name)
		}
		return
	}
	for _, k := range secretValueKeys {
		if v, ok := m.lookup(k); ok && v != nil && v != "" && fmt.Sprint(v) != "[]" {
			m.addf("the ConfigMap's configuration sets %s: a secret value in a ConfigMap", k)
		}
	}
	for _, k := range fileKeys {
		v, ok := m.lookup(k)
		if !ok {
			continue
		}
		var paths []string
		switch v := v.(type) {
		case string:
			paths = []string{v}
		case []any:
			for _, p := range v {
				paths = append(paths, fmt.Sprint(p))
			}
		default:
			m.addf("configuration %s: want a path", k)
		}
		for _, p := range paths {
			if p != "" && !m.fromSecret(p) {
				m.addf("configuration %s=%s is not a file mounted from a Secret", k, p)
			}
		}
	}
	if m.configString("cookies.keys_file") == "" {
		m.addf("configuration: no cookies.keys_file")
	}
	for _, k := range []string{"listen", "admin_listen"} {
		if _, ok := m.lookup(k); ok {
			m.addf("configuration sets %s: the environment (TH_%s) would override it", k, strings.ToUpper(k))
		}
	}
}

// podLabels of the Deployment.
func podLabels(d *appsv1.Deployment) labels.Set { return labels.Set(d.Spec.Template.Labels) }

func (m *manifest) checkService(s *corev1.Service, d *appsv1.Deployment) {
	where := "Service " + s.Name
	if len(s.Spec.Selector) == 0 || !labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels(d)) {
		m.addf("%s: the selector does not select the Deployment's pods", where)
	}
	c := mainContainer(d)
	metrics := s.Labels["app.kubernetes.io/component"] == "metrics"
	for _, p := range s.Spec.Ports {
		for _, e := range validation.IsValidPortName(p.Name) {
			m.addf("%s: port name %q: %s", where, p.Name, e)
		}
		target := port(c, p.TargetPort)
		switch {
		case target == 0:
			m.addf("%s: port %s targets %s, not a container port", where, p.Name, p.TargetPort.String())
		case target == namedPort(c, "admin") && !metrics:
			m.addf("%s: exposes the admin port (only the metrics Service may)", where)
		case target != namedPort(c, "admin") && metrics:
			m.addf("%s: the metrics Service exposes a port other than admin", where)
		}
	}
}

func mainContainer(d *appsv1.Deployment) corev1.Container {
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == container {
			return c
		}
	}
	return corev1.Container{}
}

func (m *manifest) checkPDB(p *policyv1.PodDisruptionBudget, d *appsv1.Deployment) {
	sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(podLabels(d)) {
		m.addf("PodDisruptionBudget %s: the selector does not select the Deployment's pods", p.Name)
	}
	if (p.Spec.MinAvailable == nil) == (p.Spec.MaxUnavailable == nil) {
		m.addf("PodDisruptionBudget %s: want exactly one of minAvailable, maxUnavailable", p.Name)
	}
}

func (m *manifest) checkHPA(h *autoscalingv2.HorizontalPodAutoscaler, d *appsv1.Deployment) {
	ref := h.Spec.ScaleTargetRef
	if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || ref.Name != d.Name {
		m.addf("HorizontalPodAutoscaler %s: scaleTargetRef is not the Deployment %s", h.Name, d.Name)
	}
	if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 1 || *h.Spec.MinReplicas > h.Spec.MaxReplicas {
		m.addf("HorizontalPodAutoscaler %s: minReplicas must be 1..maxReplicas", h.Name)
	}
	if len(h.Spec.Metrics) == 0 {
		m.addf("HorizontalPodAutoscaler %s: no metrics", h.Name)
	}
	if d.Spec.Replicas != nil {
		m.addf("Deployment %s sets replicas while an HPA scales it (each helm upgrade would reset the count)", d.Name)
	}
}

func (m *manifest) checkServiceMonitor(sm *monitoringv1.ServiceMonitor, d *appsv1.Deployment) {
	where := "ServiceMonitor " + sm.Name
	sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
	if err != nil || sel.Empty() {
		m.addf("%s: empty or bad selector", where)
		return
	}
	var svcs []*corev1.Service
	for _, s := range all[corev1.Service](m) {
		if sel.Matches(labels.Set(s.Labels)) {
			svcs = append(svcs, s)
		}
	}
	if len(svcs) != 1 {
		m.addf("%s: selects %d Services, want the metrics Service alone", where, len(svcs))
		return
	}
	c := mainContainer(d)
	if len(sm.Spec.Endpoints) == 0 {
		m.addf("%s: no endpoints", where)
	}
	for _, ep := range sm.Spec.Endpoints {
		if ep.Path != metricsPath {
			m.addf("%s: endpoint path %q, want %s", where, ep.Path, metricsPath)
		}
		var sp *corev1.ServicePort
		for i, p := range svcs[0].Spec.Ports {
			if ep.Port != "" && p.Name == ep.Port {
				sp = &svcs[0].Spec.Ports[i]
			}
		}
		if sp == nil || port(c, sp.TargetPort) != namedPort(c, "admin") || namedPort(c, "admin") == 0 {
			m.addf("%s: the endpoint's port is not the Service port of the admin listener", where)
		}
	}
}
