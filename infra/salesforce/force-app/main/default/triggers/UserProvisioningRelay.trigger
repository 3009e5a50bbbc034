/**
 * Relays User_Provisioning__e events to userprov in the streaming-API shape, at most 100 per
 * request (userprov refuses larger batches).
 */
trigger UserProvisioningRelay on User_Provisioning__e (after insert) {
    List<Map<String, Object>> batch = new List<Map<String, Object>>();
    for (User_Provisioning__e e : Trigger.new) {
        batch.add(new Map<String, Object>{
            'data' => new Map<String, Object>{
                'payload' => e.getPopulatedFieldsAsMap(),
                'event' => new Map<String, Object>{ 'EventUuid' => e.EventUuid, 'replayId' => e.ReplayId }
            },
            'channel' => '/event/User_Provisioning__e'
        });
        if (batch.size() == 100) {
            System.enqueueJob(new UserprovCallout(JSON.serialize(batch)));
            batch.clear();
        }
    }
    if (!batch.isEmpty()) {
        System.enqueueJob(new UserprovCallout(JSON.serialize(batch)));
    }
}
