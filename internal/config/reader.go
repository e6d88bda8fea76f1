package config

import "github.com/tidwall/gjson"

// Reader is the strict JSON reader Parse uses, for the project's other
// documents (the gateway spec of package envoy): the same checks (unknown
// and repeated fields, wrong types, integer ranges), the same messages and
// the same Problem paths, so there is one reader and one error format. The
// zero value is ready to use; a Reader is not safe for concurrent use.
type Reader struct {
	p parser
}

// Add records a problem at path.
func (r *Reader) Add(path, message string) {
	r.p.problems = append(r.p.problems, Problem{Path: path, Message: message})
}

// Problems returns the problems recorded so far, in the order found.
func (r *Reader) Problems() []Problem { return r.p.problems }

// Object returns v as an object whose fields are among allowed, recording a
// problem for every other field, for a repeated one, and for a v that is not
// an object (then it returns nil). path is v's own path, "" for the root.
func (r *Reader) Object(v gjson.Result, path string, allowed ...string) *Object {
	o := r.p.object(v, path, allowed...)
	if o == nil {
		return nil
	}
	return &Object{o: o}
}

// Object is a checked JSON object. Its getters record a problem for a value
// of the wrong type or out of range and return ok=false for it and for an
// absent field.
type Object struct {
	o *object
}

// Get returns a field's raw value.
func (o *Object) Get(name string) (v gjson.Result, ok bool) {
	v, ok = o.o.fields[name]
	return v, ok
}

// Path returns the path of the field name.
func (o *Object) Path(name string) string { return join(o.o.path, name) }

// Str reads a string field.
func (o *Object) Str(name string) (string, bool) { return o.o.str(name) }

// Int reads an integer field that must lie in [lo, hi].
func (o *Object) Int(name string, lo, hi int64) (int64, bool) { return o.o.int(name, lo, hi) }

// Kind names the JSON type of v for messages: "a string", "an array"...
func Kind(v gjson.Result) string { return kind(v) }
