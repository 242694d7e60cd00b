"""The private descriptor pool that holds the generated flame.v1 messages."""

from google.protobuf import descriptor_pool

POOL = descriptor_pool.DescriptorPool()
