package api

import (
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// encodedMessage is a message marshalled once and sent as is on many streams: a watch change
// goes to every watcher with one encoding instead of one per watcher.
type encodedMessage struct {
	data []byte
}

// encodeOnce marshals m for sending on any number of streams of this server.
func encodeOnce(m proto.Message) (*encodedMessage, error) {
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, err
	}
	return &encodedMessage{data: b}, nil
}

// sharedCodec is the standard proto codec that also sends encodedMessages without marshalling.
// The server forces it for every call (grpc.ForceServerCodecV2), so nothing else in the process
// is affected.
type sharedCodec struct {
	proto encoding.CodecV2
}

func newSharedCodec() sharedCodec { return sharedCodec{proto: encoding.GetCodecV2("proto")} }

func (c sharedCodec) Marshal(v any) (mem.BufferSlice, error) {
	if m, ok := v.(*encodedMessage); ok {
		// SliceBuffer's Free is a no-op, so the one encoding can be shared by every stream.
		return mem.BufferSlice{mem.SliceBuffer(m.data)}, nil
	}
	return c.proto.Marshal(v)
}

func (c sharedCodec) Unmarshal(data mem.BufferSlice, v any) error { return c.proto.Unmarshal(data, v) }

func (c sharedCodec) Name() string { return c.proto.Name() }
