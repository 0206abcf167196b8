/*
Copyright The Flowscope Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package flowcodec

import (
	"encoding/json"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func rareFlags(m *metav1.ObjectMeta) uint64 {
	var bits uint64
	if m.GenerateName != "" {
		bits |= rareGenerateName
	}
	if m.SelfLink != "" {
		bits |= rareSelfLink
	}
	if m.Generation != 0 {
		bits |= rareGeneration
	}
	if m.DeletionTimestamp != nil && !m.DeletionTimestamp.IsZero() {
		bits |= rareDeletionTimestamp
	}
	if m.DeletionGracePeriodSeconds != nil {
		bits |= rareDeletionGracePeriod
	}
	if len(m.Annotations) > 0 {
		bits |= rareAnnotations
	}
	if len(m.OwnerReferences) > 0 {
		bits |= rareOwnerReferences
	}
	if len(m.Finalizers) > 0 {
		bits |= rareFinalizers
	}
	if len(m.ManagedFields) > 0 {
		bits |= rareManagedFields
	}
	return bits
}

func (e *encoder) rare(m *metav1.ObjectMeta) {
	bits := rareFlags(m)
	e.uvarint(bits)
	if bits&rareGenerateName != 0 {
		e.string(m.GenerateName)
	}
	if bits&rareSelfLink != 0 {
		e.string(m.SelfLink)
	}
	if bits&rareGeneration != 0 {
		e.varint(m.Generation)
	}
	if bits&rareDeletionTimestamp != 0 {
		e.checkTime(m.DeletionTimestamp.Unix())
		e.varint(m.DeletionTimestamp.Unix())
	}
	if bits&rareDeletionGracePeriod != 0 {
		e.varint(*m.DeletionGracePeriodSeconds)
	}
	if bits&rareAnnotations != 0 {
		e.strMap(m.Annotations)
	}
	if bits&rareOwnerReferences != 0 {
		e.uvarint(uint64(len(m.OwnerReferences)))
		for _, r := range m.OwnerReferences {
			e.string(r.APIVersion)
			e.string(r.Kind)
			e.string(r.Name)
			e.string(string(r.UID))
			var b byte
			if r.Controller != nil {
				b |= 1
				if *r.Controller {
					b |= 2
				}
			}
			if r.BlockOwnerDeletion != nil {
				b |= 4
				if *r.BlockOwnerDeletion {
					b |= 8
				}
			}
			e.b = append(e.b, b)
		}
	}
	if bits&rareFinalizers != 0 {
		e.strList(m.Finalizers)
	}
	if bits&rareManagedFields != 0 {
		e.uvarint(uint64(len(m.ManagedFields)))
		for i := range m.ManagedFields {
			mf := &m.ManagedFields[i]
			var b byte
			if mf.Time != nil && !mf.Time.IsZero() {
				b |= 1
			}
			raw := mf.FieldsV1.GetRawString()
			if raw != "" {
				b |= 2
				if !json.Valid([]byte(raw)) && e.err == nil {
					e.err = fmt.Errorf("encode flow: managedFields[%d].fieldsV1 is not JSON", i)
				}
			}
			e.b = append(e.b, b)
			e.string(mf.Manager)
			e.string(string(mf.Operation))
			e.string(mf.APIVersion)
			if b&1 != 0 {
				e.checkTime(mf.Time.Unix())
				e.varint(mf.Time.Unix())
			}
			e.string(mf.FieldsType)
			if b&2 != 0 {
				e.string(raw)
			}
			e.string(mf.Subresource)
		}
	}
}

func (d *decoder) rare(m *metav1.ObjectMeta) {
	bits := d.uvarint()
	if bits == 0 || bits&^rareAll != 0 {
		d.fail("bad metadata bits")
		return
	}
	if bits&rareGenerateName != 0 {
		m.GenerateName = d.string()
	}
	if bits&rareSelfLink != 0 {
		m.SelfLink = d.string()
	}
	if bits&rareGeneration != 0 {
		m.Generation = d.varint()
	}
	if bits&rareDeletionTimestamp != 0 {
		sec := d.varint()
		d.checkTime(sec)
		t := metav1.NewTime(time.Unix(sec, 0))
		m.DeletionTimestamp = &t
	}
	if bits&rareDeletionGracePeriod != 0 {
		v := d.varint()
		m.DeletionGracePeriodSeconds = &v
	}
	if bits&rareAnnotations != 0 {
		m.Annotations = d.strMap()
	}
	if bits&rareOwnerReferences != 0 {
		if n := d.count(5); n > 0 {
			m.OwnerReferences = make([]metav1.OwnerReference, n)
			for i := range m.OwnerReferences {
				r := &m.OwnerReferences[i]
				r.APIVersion = d.string()
				r.Kind = d.string()
				r.Name = d.string()
				r.UID = types.UID(d.string())
				b := d.byte()
				if b&^15 != 0 || b&3 == 2 || b&12 == 8 {
					d.fail("bad owner reference bits")
					return
				}
				if b&1 != 0 {
					v := b&2 != 0
					r.Controller = &v
				}
				if b&4 != 0 {
					v := b&8 != 0
					r.BlockOwnerDeletion = &v
				}
			}
		}
	}
	if bits&rareFinalizers != 0 {
		m.Finalizers = d.strList()
	}
	if bits&rareManagedFields != 0 {
		if n := d.count(6); n > 0 {
			m.ManagedFields = make([]metav1.ManagedFieldsEntry, n)
			for i := range m.ManagedFields {
				mf := &m.ManagedFields[i]
				b := d.byte()
				if b&^3 != 0 {
					d.fail("bad managed fields bits")
					return
				}
				mf.Manager = d.string()
				mf.Operation = metav1.ManagedFieldsOperationType(d.string())
				mf.APIVersion = d.string()
				if b&1 != 0 {
					sec := d.varint()
					d.checkTime(sec)
					t := metav1.NewTime(time.Unix(sec, 0))
					mf.Time = &t
				}
				mf.FieldsType = d.string()
				if b&2 != 0 {
					raw := d.string()
					if raw == "" {
						d.fail("empty fieldsV1")
						return
					}
					// The server writes it into responses verbatim.
					if !json.Valid([]byte(raw)) {
						d.fail("fieldsV1 is not JSON")
						return
					}
					mf.FieldsV1 = &metav1.FieldsV1{}
					mf.FieldsV1.SetRawString(raw)
				}
				mf.Subresource = d.string()
			}
		}
	}
}
